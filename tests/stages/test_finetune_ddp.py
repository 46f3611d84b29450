"""Two-process data-parallel finetune on CPU (gloo, launched by torchrun): identical LoRA weights on both
ranks, each step's samples split between the ranks without overlap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from ipvgkit.stages import finetune_ckpt as ck

from .finetune_prep import make_prep

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_hold_identical_loras_and_split_the_data(tmp_path):
    prep = make_prep(tmp_path / "prep", n=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "ipvgkit", "finetune", "--data", str(prep), "--model", "tiny-wan", "--out", str(out),
           "--max-steps", "4", "--frames", "9", "--height", "32", "--width", "32", "--device", "cpu", "--quiet",
           "--models-dir", str(tmp_path / "models"), "--set", "checkpoint_every=2", "--set", "lora.rank=4"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for step, path in ck.list_checkpoints(out):
        state = json.loads((path / ck.STATE_FILE).read_text())
        digests = state["adapter_sha256_per_rank"]
        assert state["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1], step
        assert (path / "random_states_0.pkl").is_file() and (path / "random_states_1.pkl").is_file()
    rows = ck.read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert len(row["samples"]) == 2 and len(set(row["samples"])) == 2  # one clip per rank, different
    for epoch in (rows[0:2], rows[2:4]):  # 4 samples, 2 per step: every epoch sees each sample once
        assert len({s for row in epoch for s in row["samples"]}) == 4
    assert (out / "final" / "pytorch_lora_weights.safetensors").is_file()


@pytest.mark.parametrize("name", ["ddp", "cpu_ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_accelerate_configs_parse(name):
    cfg = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    kind = {"ddp": "MULTI_GPU", "cpu_ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(name, "DEEPSPEED")
    assert cfg.distributed_type.value == kind
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "cpu_ddp":  # MULTI_GPU is what makes accelerate launch start the processes (torchrun)
        assert cfg.num_processes == 2 and cfg.use_cpu and cfg.mixed_precision == "no"
