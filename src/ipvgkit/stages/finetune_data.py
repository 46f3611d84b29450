"""The training data of ``ipvg finetune``: a prepare folder's manifest, checked once, read per step.

Each sample gives a clip of ``frames`` frames at ``fps`` starting at its ``t_start`` (seeking by time,
never by the file's own frame index), resized to cover ``width x height`` and centre-cropped, its
caption, its timeline events and its first ``num_refs`` reference crops.

Cached tensors (written by ``ipvg prepare``): a sample's ``cache`` maps a key to a safetensors file with
``latents`` ``(C, f, h, w)`` (normalised Wan latents), ``prompt_embeds`` ``(L, D)`` and optionally
``ref_latents`` ``(C, n, h, w)``; its metadata says ``model``, ``height``, ``width`` and ``frames``.
An entry made for the run's model and size is used; a sample whose entries are all for another model
or size is an error before training (delete the cache or prepare again); a sample without entries is
encoded on the fly, and the run says so.

Order: the samples are visited in a fresh seeded permutation per epoch; micro-batch ``k`` of the run
takes positions ``[k B W, (k + 1) B W)`` of that stream and rank ``r`` the ``B`` positions from
``k B W + r B`` (``B`` batch size, ``W`` ranks): ranks never overlap, and the position depends only on
the step, so a resumed run reads exactly what the uninterrupted run would have read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ipvgkit.data.manifest import ManifestEvent, Sample, read_manifest
from ipvgkit.errors import InputError, MediaError
from ipvgkit.models import identity
from ipvgkit.progress import Progress

CACHE_TENSORS = ("latents", "prompt_embeds")


@dataclass
class TrainSample:
    """One sample ready for the model: cached tensors, or pixels and text to encode."""

    sample_id: str
    caption: str
    events: list[ManifestEvent] | None
    latents: torch.Tensor | None = None
    prompt_embeds: torch.Tensor | None = None
    ref_latents: torch.Tensor | None = None
    frames: torch.Tensor | None = None  # uint8 (F, H, W, 3)
    refs: list[Any] | None = None  # PIL images


def load_clip(
    path: Path,
    t_start: float,
    frames: int,
    fps: float,
    height: int,
    width: int,
    file_fps: float | None = None,
) -> np.ndarray:
    """``frames`` RGB frames at times ``t_start + i / fps``: frame ``round(i * file_fps / fps)`` of the
    file's frames from ``t_start`` on (:func:`ipvgkit.media.decode_range.decode_range`, seeking by
    time), each fitted to ``width x height``: uint8 ``(frames, height, width, 3)``."""
    from PIL import Image

    from ipvgkit.media import probe_video
    from ipvgkit.media.decode_range import decode_range

    rate = file_fps or probe_video(path).fps
    if not rate or rate <= 0:
        raise MediaError(f"{path}: unknown frame rate")
    idx = [round(i * rate / fps) for i in range(frames)]
    want = set(idx)
    rng = decode_range(path, t_start, t_start + (idx[-1] + 1) / rate, keep=lambda i: i in want)
    got = dict(zip(rng.kept_index, rng.frames, strict=True))
    missing = [i for i in idx if i not in got]
    if missing:
        raise MediaError(
            f"{path}: {len(missing)} of {frames} frames missing from {t_start:.3f}s (clip too short?)"
        )
    fitted = {i: np.asarray(identity.fit_image(Image.fromarray(got[i]), width, height)) for i in want}
    return np.stack([fitted[i] for i in idx])


def _cache_entry(prep: Path, s: Sample, want: dict[str, str]) -> tuple[Path | None, str | None, bool]:
    """The sample's cache file made for ``want`` (model, size) and whether it holds reference latents,
    or the reason none fits."""
    from safetensors import safe_open

    seen = []
    for _key, rel in sorted(s.cache.items()):
        path = prep / rel
        if not path.is_file():
            seen.append(f"{rel} is missing")
            continue
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            names = set(f.keys())
        got = {k: str(meta.get(k)) for k in want}
        if got == want and all(n in names for n in CACHE_TENSORS):
            return path, None, "ref_latents" in names
        seen.append(f"{rel} is for model {got['model']} at {got['width']}x{got['height']}x{got['frames']}")
    return None, "; ".join(seen), False


class TrainData:
    """The checked samples of a prepare folder (module docstring)."""

    def __init__(self, prep: Path, cfg: Any, progress: Progress):
        self.prep = Path(prep)
        self.cfg = cfg
        samples = read_manifest(self.prep)
        if not samples:
            raise InputError(f"{self.prep}: the manifest has no samples")
        want = {
            "model": cfg.model,
            "height": str(cfg.height),
            "width": str(cfg.width),
            "frames": str(cfg.frames),
        }
        self.samples: list[Sample] = []
        self.cache: dict[str, Path] = {}
        with_refs = 0
        self.skipped: list[dict[str, str]] = []
        for s in samples:
            reason = self._problem(s)
            if reason:
                self.skipped.append({"sample_id": s.sample_id, "reason": reason})
                progress.log(f"skipped sample {s.sample_id}: {reason}")
                continue
            if s.cache:
                path, why, has_refs = _cache_entry(self.prep, s, want)
                if path is None:
                    raise InputError(
                        f"sample {s.sample_id}: cached tensors do not fit this run ({why}); want model "
                        f"{cfg.model} at {cfg.width}x{cfg.height}x{cfg.frames}: prepare again or drop the cache"
                    )
                self.cache[s.sample_id] = path
                with_refs += has_refs
            self.samples.append(s)
        if not self.samples:
            raise InputError(
                f"{self.prep}: no usable sample ({len(self.skipped)} skipped; first: {self.skipped[0]['reason']})"
            )
        self.all_cached = len(self.cache) == len(self.samples)
        self.none_cached = not self.cache
        self.needs_ref_encoding = with_refs < len(self.samples)

    def _problem(self, s: Sample) -> str | None:
        cfg = self.cfg
        need = (cfg.frames - 1) / cfg.fps
        if s.duration + 1e-6 < need:
            return f"clip is {s.duration:.2f}s, {cfg.frames} frames at {cfg.fps:g} fps need {need:.2f}s"
        if cfg.method == "reference-concat" and len(s.ref_images) < cfg.num_refs:
            return f"{len(s.ref_images)} reference image(s), the run uses {cfg.num_refs}"
        if not s.cache and not self.video_path(s).is_file():
            return f"video not found: {self.video_path(s)}"
        return None

    def video_path(self, s: Sample) -> Path:
        p = Path(s.video)
        return p if p.is_absolute() else self.prep / p

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> TrainSample:
        """Sample ``index``: cached tensors when there are, else pixels and reference images."""
        s = self.samples[index]
        cfg = self.cfg
        events = s.events if cfg.timeline else None
        out = TrainSample(s.sample_id, s.caption, events)
        path = self.cache.get(s.sample_id)
        if path is not None:
            from safetensors.torch import load_file

            t = load_file(str(path))
            out.latents, out.prompt_embeds = t["latents"], t["prompt_embeds"]
            if "ref_latents" in t:
                out.ref_latents = t["ref_latents"][:, : cfg.num_refs]
        if out.latents is None:
            clip = load_clip(
                self.video_path(s), s.t_start, cfg.frames, cfg.fps, cfg.height, cfg.width, s.video_fps
            )
            out.frames = torch.from_numpy(clip)
        if cfg.method == "reference-concat" and out.ref_latents is None:
            out.refs = [identity.open_image(self.prep / r) for r in s.ref_images[: cfg.num_refs]]
        return out


def positions(micro_batch: int, rank: int, world: int, batch: int) -> list[int]:
    """Stream positions of ``rank``'s share of micro-batch ``micro_batch`` (module docstring)."""
    start = micro_batch * batch * world + rank * batch
    return list(range(start, start + batch))


def sample_index(position: int, n: int, seed: int) -> int:
    """The sample at stream ``position``: epoch ``position // n`` is a permutation seeded by (seed, epoch)."""
    epoch, offset = divmod(position, n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return int(torch.randperm(n, generator=g)[offset])
