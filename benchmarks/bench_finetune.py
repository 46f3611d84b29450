"""Benchmark ``ipvg finetune`` on ``tiny-wan``: s/step and peak memory, cached vs uncached inputs,
gradient checkpointing on/off, block swap (on CPU: the cost of the hooks and CPU-to-CPU copies).

A prepare folder of pan clips over the real face photos is written once and cached with
``ipvg prepare cache`` (the stage itself). Each row is one fresh ``python -m ipvgkit finetune`` process
(its peak RSS, recorded in ``metrics.jsonl``, is its own), ``--steps`` optimizer steps on one torch thread; s/step is the median of
``metrics.jsonl``'s ``s_per_step`` without the first step (warm-up), the wall time includes loading.

    .venv/bin/python benchmarks/bench_finetune.py                  # 17 frames 64x64, 8 steps
    .venv/bin/python benchmarks/bench_finetune.py --frames 33 --size 96 --steps 6 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_prep(folder: Path, n: int, frames: int, size: int) -> Path:
    """``n`` samples: a pan clip (``frames`` + 8 frames at 16 fps) and one reference crop each."""
    from PIL import Image

    from ipvgkit.assets import sample_image
    from ipvgkit.data.manifest import Sample, sample_id, write_manifest
    from ipvgkit.media import encode_video
    from ipvgkit.media.synth import pan_frames

    (folder / "refs").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        img = sample_image(("tom_hanks", "astronaut", "t1")[i % 3])
        clip = pan_frames(img, n_frames=frames + 8, height=2 * size, width=2 * size, travel=0.1 + 0.03 * i)
        video = encode_video(clip, folder / f"v{i}.mp4", fps=16.0)
        Image.fromarray(clip[0]).save(folder / "refs" / f"r{i}.png")
        samples.append(Sample(
            sample_id=sample_id("bench", f"v{i}", 0, frames + 8), source="bench", identity_id=str(i),
            video=str(video), frame_start=0, frame_end=frames + 8, fps=16.0, t_start=0.0,
            t_end=(frames + 8) / 16, caption=f"a person {i} talks", ref_images=[f"refs/r{i}.png"],
            video_fps=16.0, bucket={"height": size, "width": size, "frames": frames, "fps": 16},
        ))  # fmt: skip
    write_manifest(folder, samples)
    return folder


def run_row(prep: Path, out: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "ipvgkit", "finetune", "--data", str(prep), "--model", "tiny-wan",
           "--out", str(out), "--max-steps", str(args.steps), "--frames", str(args.frames),
           "--height", str(args.size), "--width", str(args.size), "--models-dir", str(args.models_dir),
           "--quiet", "--set", "checkpoint_every=100000", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "s_per_step": statistics.median(row["s_per_step"] for row in rows[1:]),
        "first_step_s": rows[0]["s_per_step"],
        "wall_s": round(wall, 2),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        "peak_rss_mb": rows[-1]["memory_mb"],  # the trainer process's own peak RSS (getrusage SELF)
        "last_loss": rows[-1]["loss"],
    }


ROWS = [
    ("uncached, reference-concat", [], False),
    ("cached, reference-concat", [], True),
    ("cached, reference-concat, grad ckpt", ["--set", "gradient_checkpointing=true"], True),
    ("uncached, reference-concat, grad ckpt", ["--set", "gradient_checkpointing=true"], False),
    ("cached, method none (no VAE, no text encoder)", ["--method", "none"], True),
    (
        "cached, reference-concat, grad ckpt, block swap 2",
        ["--set", "gradient_checkpointing=true", "--set", "memory.block_swap=2"],
        True,
    ),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from ipvgkit.stages.prepare_cache import CacheConfig, run_cache

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args.models_dir = root / "models"
        uncached = write_prep(root / "prep", args.samples, args.frames, args.size)
        cached = root / "prep_cached"
        import shutil

        shutil.copytree(uncached, cached)
        run_cache(CacheConfig(data=cached, model="tiny-wan", models_dir=args.models_dir, device="cpu"))
        results = []
        for name, extra, use_cache in ROWS:
            prep = cached if use_cache else uncached
            res = run_row(prep, root / f"run{len(results)}", args, extra)
            results.append({"row": name, **res})
    if args.json:
        print(
            json.dumps(
                {"frames": args.frames, "size": args.size, "steps": args.steps, "rows": results}, indent=2
            )
        )
        return
    print(f"tiny-wan, {args.frames} frames {args.size}x{args.size}, {args.steps} steps, 1 thread")
    print(f"{'row':48} {'s/step':>8} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for r in results:
        print(
            f"{r['row']:48} {r['s_per_step']:8.3f} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mb']:12.1f}"
        )


if __name__ == "__main__":
    main()
