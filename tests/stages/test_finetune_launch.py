"""ipvg finetune under ``accelerate launch`` on CPU (gloo, two processes): data parallel with
configs/accelerate/cpu_ddp.yaml; FSDP2 and DeepSpeed ZeRO-2/3 with their configs (accelerate's state forced
on CPU by sharded_cpu_launch.py, see there): checkpoints, exact resume, the gathered final LoRA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ipvgkit.errors import MissingDependencyError, UsageError
from ipvgkit.models.lora_train import read_metadata
from ipvgkit.stages import finetune_ckpt as ck
from ipvgkit.stages.finetune import finetune
from ipvgkit.stages.finetune_config import FinetuneConfig, LoraSettings

from .finetune_prep import make_prep

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
SHARDED_LAUNCHER = Path(__file__).with_name("sharded_cpu_launch.py")
LORA = Path("final") / "pytorch_lora_weights.safetensors"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    return make_prep(tmp_path_factory.mktemp("prep"), n=4)


def launch(config: str, prep: Path, out: Path, models_dir: Path, steps: int, *extra: str) -> None:
    """``accelerate launch --config_file configs/accelerate/CONFIG.yaml --num_processes 2`` of ipvg finetune
    (``python -m ipvgkit``; sharded_cpu_launch.py for FSDP and DeepSpeed)."""
    script = ["-m", "ipvgkit"] if config == "cpu_ddp" else [str(SHARDED_LAUNCHER)]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml"),
           "--num_processes", "2", "--main_process_port", str(_free_port()), *script,
           "finetune", "--data", str(prep), "--model", "tiny-wan", "--out", str(out), "--max-steps", str(steps),
           "--frames", "9", "--height", "32", "--width", "32", "--device", "cpu", "--quiet",
           "--models-dir", str(models_dir), "--set", "checkpoint_every=2", "--set", "lora.rank=4", *extra]  # fmt: skip
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]


def lora(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / LORA))


@pytest.fixture(scope="module")
def ddp_run(prep, models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    launch("cpu_ddp", prep, out, models_dir, 4)
    return out


@pytest.mark.slow
def test_accelerate_launch_with_cpu_ddp_config_runs_two_ranks(ddp_run):
    for step, path in ck.list_checkpoints(ddp_run):
        state = json.loads((path / ck.STATE_FILE).read_text())
        digests = state["adapter_sha256_per_rank"]
        assert state["world_size"] == 2 and len(digests) == 2 and digests[0] == digests[1], step
        assert (path / ck.ADAPTER_STATE).is_file()  # the LoRA only, not the frozen base weights
    rows = ck.read_metrics(ddp_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(len(set(r["samples"])) == 2 for r in rows)  # one clip per rank, different
    assert (ddp_run / LORA).is_file()


# what accelerate saves of the sharded model and optimizer in a checkpoint (the frozen weights included)
SAVED = {
    "fsdp": ("pytorch_model_fsdp_0/.metadata", "optimizer_0/.metadata"),
    "deepspeed_zero2": ("pytorch_model/mp_rank_00_model_states.pt", "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt"),
    "deepspeed_zero3": ("pytorch_model/zero_pp_rank_1_mp_rank_00_model_states.pt", "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("config", list(SAVED))
def test_sharded_run_resumes_exactly_and_gathers_the_lora_of_ddp(prep, models_dir, ddp_run, tmp_path, config):
    if config.startswith("deepspeed"):
        pytest.importorskip(
            "deepspeed", reason="DeepSpeed is not a dependency: pip install deepspeed to run this"
        )
    straight, split = tmp_path / "straight", tmp_path / "split"
    launch(config, prep, straight, models_dir, 4)
    launch(config, prep, split, models_dir, 2)
    launch(config, prep, split, models_dir, 4, "--resume")
    for _step, path in ck.list_checkpoints(straight):  # accelerate saved the sharded model itself
        assert json.loads((path / ck.STATE_FILE).read_text())["world_size"] == 2
        assert all((path / f).is_file() for f in SAVED[config]) and not (path / ck.ADAPTER_STATE).exists()
    # exact resume: 2 steps + resume + 2 steps == 4 straight, bitwise (losses and LoRA)
    assert [r["loss"] for r in ck.read_metrics(split)] == [r["loss"] for r in ck.read_metrics(straight)]
    a, b, ref = lora(straight), lora(split), lora(ddp_run)
    assert a.keys() == b.keys() == ref.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # against DDP on the same two ranks, samples and noise: the same gradients, reduce-scattered instead of
    # all-reduced (and gathered back for ZeRO-3's forward), the grad norm summed shard by shard: equal up to
    # the order of float sums (bitwise for FSDP and ZeRO-2 here, 7e-9 for ZeRO-3)
    for k in a:
        torch.testing.assert_close(a[k], ref[k], rtol=0, atol=1e-6)
    for r, d in zip(ck.read_metrics(straight), ck.read_metrics(ddp_run), strict=True):
        assert r["samples"] == d["samples"] and r["loss"] == pytest.approx(d["loss"], rel=1e-6, abs=0)
        assert r["grad_norm"] == pytest.approx(d["grad_norm"], rel=1e-5)  # the sharded parameters' norm
    meta, ref_meta = read_metadata(straight / LORA), read_metadata(ddp_run / LORA)
    assert meta["lora_adapter_metadata"] == ref_meta["lora_adapter_metadata"]
    _assert_diffusers_loads(models_dir / "tiny-wan", straight / "final")


def _assert_diffusers_loads(model: Path, final: Path) -> None:
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(str(model))
    x = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))

    def out() -> torch.Tensor:
        with torch.no_grad():
            return pipe.transformer(
                hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=ctx
            )[0]

    base = out()
    pipe.load_lora_weights(str(final))
    assert not torch.allclose(out(), base), "the gathered LoRA changed nothing"


@pytest.mark.parametrize("env", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_a_sharded_launch_that_accelerate_cannot_set_up_is_refused(
    prep, models_dir, tmp_path, monkeypatch, env
):
    """One CPU process with the FSDP / DeepSpeed flag of a launch: accelerate would train unsharded."""
    import importlib.util

    monkeypatch.setenv(env, "true")
    cfg = FinetuneConfig(data=prep, out=tmp_path / "run", model="tiny-wan", models_dir=models_dir, frames=9,
                         height=32, width=32, max_steps=1, device="cpu", lora=LoraSettings(rank=4, alpha=4.0))  # fmt: skip
    if env.endswith("DEEPSPEED") and importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(MissingDependencyError, match="asked for DeepSpeed but it is not installed"):
            finetune(cfg)
    else:
        with pytest.raises(UsageError, match=r"asked for \w+ .* but accelerate set up NO: .*GPUs only"):
            finetune(cfg)
    assert not (tmp_path / "run").exists()
