"""``python sharded_cpu_launch.py ARGS...`` = ``ipvg ARGS...`` with accelerate's FSDP or DeepSpeed set up on
the CPU (gloo), for the tests only: run it under ``accelerate launch --config_file
configs/accelerate/{fsdp,deepspeed_zero2,deepspeed_zero3}.yaml``.

accelerate 1.15 sets FSDP and DeepSpeed up on GPUs only: with ``Accelerator(cpu=True)`` its state is
MULTI_CPU and the plugin is dropped without a word (accelerate/state.py turns only the MULTI_GPU-like kinds
into FSDP, and DeepSpeed needs ``not cpu``; ipvg finetune refuses that launch). torch's FSDP2
(``fully_shard``) and DeepSpeed's CPU accelerator both run on CPU with gloo, so this launcher turns the
state into FSDP / DeepSpeed right after the Accelerator is made, with the plugin accelerate builds from the
launch's ``FSDP_*`` / ``ACCELERATE_DEEPSPEED_*`` variables. accelerate's own code for that kind (FSDP:
``fsdp2_prepare_model``, ``save_fsdp_model`` / ``load_fsdp_model``, DCP optimizer checkpoints,
``get_state_dict``; DeepSpeed: ``deepspeed.initialize``, engine checkpoints, the ZeRO-3 gather) and
ipvgkit's sharded paths then run for real. Only the launch-time kind check is bypassed; nothing of ipvgkit
is replaced.
"""

from __future__ import annotations

import os

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType

_init = accelerate.Accelerator.__init__


def _sharded_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:
        raise SystemExit(
            f"sharded_cpu_launch: expected a MULTI_CPU accelerate state, got {self.distributed_type}"
        )
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        import deepspeed
        from accelerate.utils import DeepSpeedPlugin

        deepspeed.init_distributed(dist_backend="gloo")  # takes over the process group accelerate made
        plugin = DeepSpeedPlugin()  # from the launch's ACCELERATE_DEEPSPEED_* variables
        plugin.set_mixed_precision("no")
        plugin.select(_from_accelerator_state=True)
        self.state.deepspeed_plugins = {"default": plugin}
        kind = DistributedType.DEEPSPEED
    else:
        from accelerate.utils import FullyShardedDataParallelPlugin

        self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the launch's FSDP_* variables
        kind = DistributedType.FSDP
    self.state.distributed_type = kind
    PartialState._shared_state["distributed_type"] = kind  # AcceleratorState() copies it from there


accelerate.Accelerator.__init__ = _sharded_on_cpu

if __name__ == "__main__":
    from ipvgkit.cli.app import main

    main()
