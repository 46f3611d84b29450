"""Benchmark ``ipvg prepare``: range decoding, samples/s per engine, Ray start-up, latent caching.

Data: ``--videos`` long H.264 videos (``--seconds`` s at 30 fps, ``--size`` WxH; slow pans over the real
face photos, so the encoder has real texture to code) in VIP-200K format, ``--segments`` 2 s segments
per video spread over the whole length (as in VIP-200K, where a clip sits anywhere in a long
YouTube video), one annotated face per segment.

- decoding: per sample, ``decode_range`` (seek to the key frame before ``t_start``, decode to ``t_end``)
  vs ``read_frames`` of the same frames (decodes from the first frame up to the range end) vs decoding
  the whole video;
- prepare: ``run_prepare`` with the local engine (1 and 2 workers) and the Ray engine (2 CPUs, a local
  Ray started and stopped by the run; its start-up measured separately with a bare ``ray.init``);
  samples/s and decoded frames/s;
- cache: ``run_cache`` on tiny-wan at a ``--cache-bucket`` bucket, s/sample (the model load excluded).

    .venv/bin/python benchmarks/bench_prepare.py                 # 4 videos x 30 s, 3 segments each
    .venv/bin/python benchmarks/bench_prepare.py --videos 2 --seconds 20 --no-ray --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

FPS = 30.0
SEG = 60  # frames per segment (2 s)


def build(root: Path, args) -> tuple[Path, Path]:
    from ipvgkit.assets import available_sample_images
    from ipvgkit.media import VideoWriter
    from ipvgkit.media.synth import pan_frames

    w, h = (int(x) for x in args.size.split("x"))
    images = list(available_sample_images().values())
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    n = int(args.seconds * FPS)
    entries = []
    for v in range(args.videos):
        vid = f"bench{v}"
        with VideoWriter(videos / f"{vid}.mp4", fps=FPS, preset="veryfast") as wr:
            for start in range(0, n, 150):  # in chunks: memory stays small
                k = min(150, n - start)
                wr.write(pan_frames(images[v % len(images)], k, h, w, travel=0.3 * (1 + start / n)))
        clip = {"beg": {"frame_num": 0, "framerate": FPS}, "end": {"frame_num": n, "framerate": FPS}}
        starts = [int((s + 0.5) * n / args.segments) - SEG // 2 for s in range(args.segments)]
        entries.append({
            "faces": [{"id": vid, "clip": clip, "fidx": a + SEG // 2, "xyxy_norm": [0.3, 0.15, 0.7, 0.75]} for a in starts],
            "segments": [{"id": vid, "clip": clip, "fidx_beg": a, "fidx_end": a + SEG - 1, "caption": f"person {v}"} for a in starts],
        })  # fmt: skip
    ann = root / "ann.json"
    ann.write_text(json.dumps(entries))
    return ann, videos


def bench_decoding(ann: Path, videos: Path) -> dict:
    from ipvgkit.media import read_frames, read_video
    from ipvgkit.media.decode_range import decode_range

    entries = json.loads(ann.read_text())
    rng_s, prefix_s, whole_s, frames = 0.0, 0.0, 0.0, 0
    for e in entries:
        path = videos / f"{e['segments'][0]['id']}.mp4"
        t0 = time.perf_counter()
        read_video(path)
        whole_s += time.perf_counter() - t0
        for s in e["segments"]:
            a, b = s["fidx_beg"], s["fidx_end"] + 1
            t0 = time.perf_counter()
            r = decode_range(path, a / FPS, b / FPS)
            rng_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            read_frames(path, list(range(a, b)))
            prefix_s += time.perf_counter() - t0
            frames += r.n_in_range
    n = sum(len(e["segments"]) for e in entries)
    return {
        "samples": n,
        "range_s_per_sample": rng_s / n,
        "from_start_s_per_sample": prefix_s / n,
        "whole_video_s_per_video": whole_s / len(entries),
        "range_frames_per_s": frames / rng_s,
        "speedup_vs_from_start": prefix_s / rng_s,
    }


def bench_prepare(ann: Path, videos: Path, root: Path, engine: str, workers: int, face: str) -> dict:
    from ipvgkit.data.manifest import read_manifest
    from ipvgkit.stages.prepare import PrepareConfig, run_prepare

    out = root / f"prep-{engine}-{workers}-{face}"
    cfg = PrepareConfig(
        source="vip200k",
        annotations=ann,
        videos=videos,
        out=out,
        engine=engine,
        workers=workers,
        face_backend=face,
    )
    t0 = time.perf_counter()
    rep = run_prepare(cfg)
    wall = time.perf_counter() - t0
    samples = read_manifest(out)
    frames = sum(s.quality["decoded_frames"] for s in samples)
    return {
        "engine": engine, "workers": workers, "face_backend": rep.face_backend, "samples": rep.samples,
        "rejected": len(rep.rejects), "wall_s": wall, "engine_s": rep.engine_seconds,
        "samples_per_s": rep.done_now / wall, "decoded_frames_per_s": frames / wall,
        "manifest": (out / "manifest.jsonl").read_bytes(),
    }  # fmt: skip


def ray_startup(workers: int) -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.shutdown()
    return time.perf_counter() - t0


def bench_cache(root: Path, ann: Path, videos: Path, bucket: str, models: Path) -> dict:
    from ipvgkit.models.base import ModelOptions
    from ipvgkit.models.factory import load_backend
    from ipvgkit.stages.prepare import PrepareConfig, run_prepare
    from ipvgkit.stages.prepare_cache import CacheConfig, run_cache
    from ipvgkit.stages.prepare_work import SampleSettings

    h, _w = bucket.split("x")[:2]
    frames = int(bucket.split("x")[2])
    out = root / "prep-cache"
    settings = SampleSettings(buckets=["x".join(bucket.split("x")[:2])], max_frames=frames)
    run_prepare(PrepareConfig(source="vip200k", annotations=ann, videos=videos, out=out, face_backend="none",
                              sample=settings))  # fmt: skip
    load_backend(
        ModelOptions(model="tiny-wan", models_dir=models, device="cpu")
    ).pipeline()  # materialise once
    t0 = time.perf_counter()
    rep = run_cache(CacheConfig(data=out, model="tiny-wan", models_dir=models, device="cpu"))
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = run_cache(CacheConfig(data=out, model="tiny-wan", models_dir=models, device="cpu"))
    return {
        "bucket": bucket, "cached": rep.cached, "s_per_sample": wall / max(rep.cached, 1),
        "reused": again.reused, "reuse_s": time.perf_counter() - t0,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--segments", type=int, default=3)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-faces", action="store_true", help="Skip the run with a face backend.")
    ap.add_argument("--no-cache", action="store_true", help="Skip the latent-cache timing.")
    ap.add_argument("--cache-bucket", default="128x128x17")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        ann, videos = build(root, args)
        res["setup_s"] = time.perf_counter() - t0
        res["decoding"] = bench_decoding(ann, videos)
        runs = [("local", 1, "none"), ("local", 2, "none")] + (
            [] if args.no_faces else [("local", 2, "auto")]
        )
        if not args.no_ray:
            runs.append(("ray", 2, "none"))
        res["prepare"] = [bench_prepare(ann, videos, root, *r) for r in runs]
        base = res["prepare"][0]["manifest"]
        same = [r["manifest"] == base for r in res["prepare"] if r["face_backend"] == "none"]
        for r in res["prepare"]:
            r.pop("manifest")
        res["identical_manifests"] = all(same)
        if not args.no_ray:
            res["ray_startup_s"] = statistics.median(ray_startup(2) for _ in range(2))
        if not args.no_cache:
            res["cache"] = bench_cache(root, ann, videos, args.cache_bucket, root / "models")
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    d = res["decoding"]
    print(f"setup {res['setup_s']:.1f} s; decoding, {d['samples']} samples of 60 frames:")
    print(f"  range {d['range_s_per_sample']:.3f} s/sample ({d['range_frames_per_s']:.0f} frames/s), "
          f"from start {d['from_start_s_per_sample']:.3f} s/sample (x{d['speedup_vs_from_start']:.1f}), "
          f"whole video {d['whole_video_s_per_video']:.2f} s/video")  # fmt: skip
    for r in res["prepare"]:
        print(f"  prepare {r['engine']:5} x{r['workers']} faces={r['face_backend']:6} {r['samples_per_s']:.2f} "
              f"samples/s, {r['decoded_frames_per_s']:.0f} decoded frames/s, wall {r['wall_s']:.1f} s")  # fmt: skip
    print(f"  identical manifests (local x1, x2, ray): {res['identical_manifests']}")
    if "ray_startup_s" in res:
        print(f"  Ray start-up + shutdown alone: {res['ray_startup_s']:.1f} s")
    c = res.get("cache")
    if c:
        print(
            f"  cache tiny-wan {c['bucket']}: {c['s_per_sample']:.2f} s/sample; rerun reused {c['reused']} in {c['reuse_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
