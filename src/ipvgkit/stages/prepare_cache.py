"""``ipvg prepare cache``: VAE latents and text embeddings of every manifest sample, for finetune.

Each sample's tensors are one safetensors file ``cache/<key hash>/<sample_id>.safetensors`` holding
``latents`` (``(1, C, (F-1)/4+1, H/8, W/8)``, normalised like Wan's video latents: ``(z - mean) / std``),
``prompt_embeds`` and ``token_group`` (the caption and each timeline event encoded as
:func:`ipvgkit.models.timeline_attn.build_context` does for generation). The key is the model id, a
hash of its revision (the hub snapshot commit, or a hash of a local folder's configs and weight file
sizes), the bucket resolution and the frame count: files are reused across runs and only redone when
one of those changes. The manifest's ``cache`` field maps the key to the file; the file's metadata
repeats the key, so a file written by a killed run is recognised and reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ipvgkit.data.manifest import Sample, read_manifest, write_manifest
from ipvgkit.errors import UsageError
from ipvgkit.fsutil import atomic_path
from ipvgkit.progress import Progress, ensure

CACHE_DIR = "cache"


@dataclass
class CacheConfig:
    data: Path = Path("prep")
    model: str = "tiny-wan"
    models_dir: Path | None = None
    device: str = "auto"
    overwrite: bool = False


@dataclass
class CacheReport:
    cached: int = 0
    reused: int = 0
    model: str = ""
    revision: str = ""
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "cached": self.cached, "reused": self.reused, "model": self.model, "revision": self.revision,
            "keys": self.keys, "seconds": round(self.seconds, 3),
            "seconds_per_sample": round(self.seconds / self.cached, 4) if self.cached else None,
        }  # fmt: skip


def model_revision(resolved) -> str:
    """The hub snapshot commit, else a hash of the folder's JSON configs and weight file names/sizes."""
    if resolved.source == "hub":
        return resolved.folder.name[:12]
    h = hashlib.sha256()
    for p in sorted(resolved.folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            rel = str(p.relative_to(resolved.folder))
            h.update(rel.encode())
            h.update(p.read_bytes() if p.suffix == ".json" else str(p.stat().st_size).encode())
    return h.hexdigest()[:12]


def cache_key(model: str, revision: str, bucket: dict) -> str:
    return f"{model}@{revision}:{bucket['height']}x{bucket['width']}x{bucket['frames']}"


def key_folder(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def bucket_pixels(sample: Sample) -> np.ndarray:
    """The sample's training frames: ``bucket.frames`` frames at ``bucket.fps`` from ``t_start``, each the
    file's frame nearest in time, fitted to the bucket size (cover + centre crop)."""
    from ipvgkit.media.decode_range import decode_range
    from ipvgkit.stages.prepare_work import fit_to_bucket

    b = sample.bucket or {}
    n, fps = int(b["frames"]), float(b["fps"])
    vfps = float(sample.video_fps or sample.fps)
    want = [round(k / fps * vfps) for k in range(n)]
    keep = set(want)
    rng = decode_range(Path(sample.video), sample.t_start, sample.t_end, keep=lambda i: i in keep)
    got = dict(zip(rng.kept_index, rng.frames, strict=True))
    last = max(got) if got else None
    frames = np.stack([got.get(i, got[last]) for i in want])  # a short tail repeats the last frame
    return fit_to_bucket(frames, int(b["height"]), int(b["width"]))


def _load(cfg: CacheConfig):
    from ipvgkit.models.base import ModelOptions
    from ipvgkit.models.factory import load_backend

    backend = load_backend(
        ModelOptions(model=cfg.model, device=cfg.device, dtype="fp32", models_dir=cfg.models_dir)
    )
    if not hasattr(backend, "pipeline") or backend.name not in ("wan", "wan-vace"):
        raise UsageError(
            f"latent caching needs a Wan model; {cfg.model!r} runs on the {backend.name} backend"
        )
    return backend


def _encode(pipe, sample: Sample, pixels: np.ndarray) -> dict:
    import torch

    from ipvgkit.models import timeline_attn

    vae = pipe.vae
    device = next(vae.parameters()).device
    x = torch.from_numpy(pixels).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)
    with torch.no_grad():
        z = vae.encode(x.to(device, vae.dtype)).latent_dist.mode().float()
        mean = torch.tensor(vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
        events = [e.text for e in sample.events or []]
        ctx = timeline_attn.build_context(pipe, sample.caption, events, device, torch.float32)
    return {
        "latents": ((z - mean) / std).cpu().contiguous(),
        "prompt_embeds": ctx.embeds.float().cpu().contiguous(),
        "token_group": ctx.token_group.cpu().contiguous(),
    }


def _valid(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("key") == key
    except Exception:  # noqa: BLE001 - a damaged file is simply redone
        return False


def run_cache(cfg: CacheConfig, progress: Progress | None = None) -> CacheReport:
    """Cache every sample of ``cfg.data``'s manifest (see the module docstring)."""
    from safetensors.torch import save_file

    progress = ensure(progress)
    t0 = time.perf_counter()
    samples = read_manifest(cfg.data)
    missing = [s.sample_id for s in samples if not s.bucket]
    if missing:
        raise UsageError(f"{cfg.data}: sample {missing[0]} has no bucket (prepared by an older ipvgkit?)")
    backend = _load(cfg)
    revision = model_revision(backend.resolved)
    report = CacheReport(model=cfg.model, revision=revision)
    progress.phase("cache latents", total=len(samples))
    pipe = None
    for s in samples:
        key = cache_key(cfg.model, revision, s.bucket)
        rel = f"{CACHE_DIR}/{key_folder(key)}/{s.sample_id}.safetensors"
        path = Path(cfg.data) / rel
        if key not in report.keys:
            report.keys.append(key)
        if not cfg.overwrite and _valid(path, key):
            report.reused += 1
        else:
            pipe = pipe or backend.pipeline()
            tensors = _encode(pipe, s, bucket_pixels(s))
            with atomic_path(path, suffix=".safetensors") as tmp:
                save_file(tensors, str(tmp), metadata={"key": key, "sample_id": s.sample_id})
            report.cached += 1
        s.cache[key] = rel
        progress.status(f"cache: {report.cached} cached, {report.reused} reused")
        progress.advance()
    write_manifest(cfg.data, samples)
    _record(cfg, report)
    report.seconds = time.perf_counter() - t0
    return report


def _record(cfg: CacheConfig, report: CacheReport) -> None:
    from ipvgkit.fsutil import atomic_write_text

    path = Path(cfg.data) / CACHE_DIR / "cache.json"
    atomic_write_text(path, json.dumps({"model": cfg.model, **report.summary()}, indent=2) + "\n")
