"""One rank of a context-parallel group on a CPU (gloo), for ``tests/models/test_context_parallel.py``
and ``tests/stages/test_generate_cp.py``: ``torchrun --standalone --nproc_per_node N`` this file.

diffusers picks each rank's device with ``rank % torch.accelerator.device_count()``, which is 0 without
an accelerator (a division by zero; why ``ipvg generate`` refuses a CPU). Here, and only here, that count
is replaced by 1 so that diffusers' real split, all-to-all and gather run on gloo.

Modes: ``split MODELS OUT.npz [SIZE]`` saves :func:`outputs` of tiny-wan split over groups of SIZE; ``run MODELS CASES OUT`` runs the writer
(rank 0: plan, claims, encode, log) and the members (follow) of :mod:`ipvgkit.stages.generate`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ipvgkit.data.cases import Event
from ipvgkit.models import GenerationRequest, ModelOptions, load_backend

SMALL = dict(num_frames=9, height=32, width=32, fps=16.0, steps=2, guidance=5.0, seed=7)
EVENTS = [Event(0.0, 0.25, "walks in"), Event(0.25, 0.5, "waves")]


def timeline_request(mode: str) -> GenerationRequest:
    return GenerationRequest(
        case_id="c1", prompt="a man in a park", ref_images=[], timeline=list(EVENTS),
        timeline_units="seconds", timeline_mode=mode, **SMALL,
    )  # fmt: skip


def outputs(backend) -> dict[str, np.ndarray]:
    """The transformer's output for one fixed latent under each timeline mode (``t_MODE``, float: a
    timeline changes a tiny model's uint8 video by at most 1) and the masked-mode video (``video``)."""
    from ipvgkit.models.wan import _maybe_timeline

    pipe = backend.pipeline()
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1, pipe.transformer.config.in_channels, 3, 4, 4, generator=g)  # 9 frames, 32x32
    found = {}
    for mode in ("masked", "soft", "prompt"):
        request = timeline_request(mode)
        backend._prepare(pipe, request)
        cond, _, state = backend._contexts(pipe, request, 0)
        with _maybe_timeline(pipe, state), torch.no_grad():
            out = pipe.transformer(
                hidden_states=latent,
                timestep=torch.tensor([500]),
                encoder_hidden_states=cond,
                return_dict=False,
            )[0]
        found[f"t_{mode}"] = out.numpy()
    found["video"] = backend.generate(timeline_request("masked"))
    return found


def split(models: Path, out: Path, size: int) -> None:
    """:func:`outputs` with the transformer split over groups of ``size`` ranks (``out``: rank 0's;
    ``out`` with ``.rank{R}`` for the first rank R of every other group)."""
    backend = load_backend(ModelOptions(model="tiny-wan", identity="none", device="cpu", models_dir=models))
    assert backend.set_context_parallel(size, dist.get_world_size()) == []
    found = outputs(backend)
    rank = dist.get_rank()
    if rank % size == 0:
        np.savez(out if rank == 0 else out.with_suffix(f".rank{rank}.npz"), **found)


def run(models: Path, cases: Path, out: Path) -> None:
    from ipvgkit.distributed import env_shard
    from ipvgkit.progress import Recorder
    from ipvgkit.stages import generate
    from ipvgkit.stages.generate_exec import Runner
    from ipvgkit.stages.generate_plan import load_entries, log_name, plan_cases
    from ipvgkit.stages.generate_types import GenerateConfig

    options = ModelOptions(model="tiny-wan", identity="none", device="cpu", models_dir=models)
    cfg = GenerateConfig(
        cases=cases, out=out, frames=9, height=32, width=32, steps=2, model_options=options,
        context_parallel=dist.get_world_size(), background_encode=False,
    )  # fmt: skip
    base = env_shard()
    share, group = generate.generate_cp.layout(cfg, base)
    progress = Recorder()
    if not group.writer:
        done = generate._follow(cfg, None, base, progress)
        (out / f"member{group.member}.json").write_text(json.dumps({"followed": done}))
        return
    entries, _ = load_entries(cfg, progress)
    plan = plan_cases(cfg, entries, out, share)
    runner = Runner(out / log_name(share), progress)
    generate._generate(cfg, None, plan.jobs, runner, base)


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    torch.accelerator.device_count = lambda: 1  # see the module docstring
    if sys.argv[1] == "split":
        split(
            Path(sys.argv[2]),
            Path(sys.argv[3]),
            int(sys.argv[4]) if len(sys.argv) > 4 else dist.get_world_size(),
        )
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    dist.destroy_process_group()
