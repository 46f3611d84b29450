"""Benchmark: validating a 1000-video submission with ``check_submission`` vs one ffprobe per file.

The submission (brief layout ``idNNN/promptK.mp4``: 200 ids x 5 prompts, 81 frames of 854x480 at 16 fps,
~5 s each) is generated once into ``--workdir`` and reused: three source clips (a slow pan over each of
the bundled face photos) are encoded with ``encode_video`` at its defaults (crf 18) and copied. The baseline is the loop a user would write: one
``ffprobe -v error -show_streams -of json FILE`` process per file, sequentially, checking the codec.
ffprobe is not bundled with imageio-ffmpeg (``apt-get install ffmpeg`` provides it); without it the
baseline is skipped with a message. Besides wall time it prints the CPU seconds (user + sys of this process
and its children: pool workers, ffprobe processes), which other users of a shared machine distort less.

    python benchmarks/bench_pack.py                      # 1000 videos in a temp dir
    python benchmarks/bench_pack.py --workdir /tmp/bp --n 200 --with-pack
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ipvgkit.media import encode_video
from ipvgkit.procs import available_cpus
from ipvgkit.stages.pack import PackConfig, check_submission, pack_submission

W, H, FPS, FRAMES = 854, 480, 16, 81


def _clip(seed: int):
    """A slow pan over a real photo (what ``ipvg demo`` writes; compresses like real footage)."""
    from ipvgkit.assets import sample_image
    from ipvgkit.media.synth import pan_frames

    image = sample_image(("astronaut", "tom_hanks", "t1")[seed % 3])
    return pan_frames(image, n_frames=FRAMES, height=H, width=W)


def make_submission(workdir: Path, n: int) -> Path:
    """Create (or reuse) ``workdir/submission_<n>`` holding ``n`` videos in the id-prompt layout."""
    sub = workdir / f"submission_{n}"
    done = workdir / f"submission_{n}.complete"
    if done.exists():
        return sub
    src_dir = workdir / "sources"
    sources = []
    for seed in range(3):
        p = src_dir / f"src{seed}.mp4"
        if not p.exists():
            encode_video(_clip(seed), p, fps=FPS)  # the defaults ipvg generate uses
        sources.append(p)
    if sub.exists():
        shutil.rmtree(sub)
    for k in range(n):
        i, j = divmod(k, 5)
        dst = sub / f"id{i + 1:03d}" / f"prompt{j + 1}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[k % len(sources)], dst)
    done.write_text("ok\n")
    return sub


def ffprobe_loop(files: list[Path], ffprobe: str) -> int:
    """The user's loop: one ffprobe per file; returns how many are H.264."""
    ok = 0
    for f in files:
        r = subprocess.run(
            [ffprobe, "-v", "error", "-show_streams", "-of", "json", str(f)], capture_output=True
        )
        streams = json.loads(r.stdout or b"{}").get("streams", [])
        ok += any(s.get("codec_name") == "h264" for s in streams)
    return ok


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (pool workers, ffprobe)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None, help="cache folder (default: a temp dir)")
    ap.add_argument("--n", type=int, default=1000, help="number of videos (default 1000)")
    ap.add_argument("--workers", type=int, default=0, help="check_submission workers (0: CPU count)")
    ap.add_argument("--with-pack", action="store_true", help="also time pack_submission (check+zip+verify)")
    args = ap.parse_args()

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_pack_")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        sub = make_submission(workdir, args.n)
        files = sorted(sub.rglob("*.mp4"))
        print(f"submission: {sub} ({len(files)} videos, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB, "
              f"ready in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        print(f"cpus: {os.cpu_count()} (workers: {args.workers or available_cpus()}), "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip

        rows: list[tuple[str, float, float]] = []  # (method, wall s, CPU s)

        def timed(name: str, fn) -> float:
            c0, t0 = _cpu(), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            rows.append((name, wall, cpu))
            return wall

        def check() -> None:
            report = check_submission(sub, workers=args.workers)
            assert report.ok and len(report.videos) == len(files), report.problems[:5]

        timed("ipvgkit check_submission (PyAV, process pool)", check)
        if args.with_pack:
            cfg = PackConfig(
                submission=sub, output=workdir / f"bench_{args.n}.zip", overwrite=True, workers=args.workers
            )
            timed("ipvgkit pack_submission (check + zip + verify)", lambda: pack_submission(cfg))

        ffprobe = shutil.which("ffprobe")
        base = None
        if ffprobe is None:
            print("ffprobe not found: skipping the baseline (apt-get install ffmpeg provides it)")
        else:

            def loop() -> None:
                assert ffprobe_loop(files, ffprobe) == len(files)

            base = timed("ffprobe loop (1 process per file, sequential)", loop)

        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print()
        print("| method | files | wall s | files/s | CPU s (all processes) | vs ffprobe loop (wall) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, wall, cpu in rows:
            if base is None:
                ratio = "-"
            elif name.startswith("ffprobe"):
                ratio = "1.0x"
            else:
                ratio = f"{base / wall:.1f}x faster"
            print(f"| {name} | {len(files)} | {wall:.2f} | {len(files) / wall:.0f} | {cpu:.2f} | {ratio} |")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
