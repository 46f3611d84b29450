"""``python fsdp_cpu_launch.py ARGS...`` = ``ipvg ARGS...`` with accelerate's FSDP set up on the CPU (gloo),
for the tests only (run it under ``accelerate launch --config_file configs/accelerate/fsdp.yaml``).

accelerate 1.15 sets FSDP up on GPUs only: with ``Accelerator(cpu=True)`` its state is MULTI_CPU and the
FSDP plugin is dropped without a word (accelerate/state.py turns only the MULTI_GPU-like kinds into FSDP;
ipvg finetune refuses that launch). torch's FSDP2 (``fully_shard``) itself runs on CPU with gloo, so this
launcher turns the state into FSDP right after the Accelerator is made, with the plugin that accelerate
builds from the launch's ``FSDP_*`` variables: accelerate's own FSDP code (``fsdp2_prepare_model``,
``save_fsdp_model`` / ``load_fsdp_model``, the optimizer's DCP checkpoint, ``get_state_dict``) and ipvgkit's
sharded paths then run for real. Only the launch-time kind check is bypassed; nothing of ipvgkit is replaced.
"""

from __future__ import annotations

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_init = accelerate.Accelerator.__init__


def _fsdp_on_cpu(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:
        raise SystemExit(
            f"fsdp_cpu_launch: expected a MULTI_CPU accelerate state, got {self.distributed_type}"
        )
    self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the launch's FSDP_* variables
    self.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # AcceleratorState() copies it


accelerate.Accelerator.__init__ = _fsdp_on_cpu

if __name__ == "__main__":
    from ipvgkit.cli.app import main

    main()
