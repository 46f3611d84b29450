"""The training data of ``ipvg finetune``: a prepare folder's manifest, checked once, read per step.

Each sample gives a clip of ``frames`` frames at ``fps`` starting at its ``t_start`` (seeking by time,
never by the file's own frame index), resized to cover ``width x height`` and centre-cropped, its
caption, its timeline events and its first ``num_refs`` reference crops.

Cached tensors (``ipvg prepare cache``, :mod:`ipvgkit.stages.prepare_cache`): a sample's ``cache``
maps the key ``model@revision:HxWxF`` to a safetensors file with ``latents`` ``(1, C, f, h, w)``,
``prompt_embeds`` ``(1, L, D)`` (the caption and each event encoded as generation does) and
``token_group``. The entry whose key is the run's model, model revision and ``height x width x frames``
is used (and the bucket's fps must be the run's); a sample whose entries are all for another model or
size is an error before training (prepare the cache again, or ``use_cache=false``); a sample without
entries is encoded on the fly, and the run says so. Pixels on the fly come from the same function the
cache was made with (:func:`ipvgkit.stages.prepare_cache.bucket_pixels`), so both paths train alike.

Order: the samples are visited in a fresh seeded permutation per epoch; micro-batch ``k`` of the run
takes positions ``[k B W, (k + 1) B W)`` of that stream and rank ``r`` the ``B`` positions from
``k B W + r B`` (``B`` batch size, ``W`` ranks): ranks never overlap, and the position depends only on
the step, so a resumed run reads exactly what the uninterrupted run would have read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ipvgkit.data.manifest import ManifestEvent, Sample, read_manifest
from ipvgkit.errors import InputError
from ipvgkit.models import identity
from ipvgkit.progress import Progress


@dataclass
class TrainSample:
    """One sample ready for the model: cached tensors, or pixels and text to encode."""

    sample_id: str
    caption: str
    events: list[ManifestEvent] | None
    latents: torch.Tensor | None = None
    prompt_embeds: torch.Tensor | None = None
    ref_latents: torch.Tensor | None = None
    token_group: torch.Tensor | None = None  # (L,) text group of each context token (cached)
    frames: torch.Tensor | None = None  # uint8 (F, H, W, 3)
    refs: list[Any] | None = None  # PIL images
    face: torch.Tensor | None = None  # (E,) face embedding (method face-adapter)


def clip_pixels(s: Sample, video: Path, frames: int, fps: float, height: int, width: int) -> np.ndarray:
    """The training frames of ``s`` at the run's size: uint8 ``(frames, height, width, 3)``, ``frames``
    frames at ``fps`` from ``t_start``, each the file's frame nearest in time (seeking by time),
    fitted to ``width x height`` (what ``ipvg prepare cache`` encodes)."""
    from ipvgkit.stages.prepare_cache import bucket_pixels

    bucket = {"height": height, "width": width, "frames": frames, "fps": fps}
    return bucket_pixels(replace(s, video=str(video), bucket=bucket))


def _cache_entry(prep: Path, s: Sample, key: str, fps: float) -> tuple[Path | None, str | None]:
    """The sample's cache file for ``key``, or why none fits (its keys name model, revision and size)."""
    if key in s.cache:
        path = prep / s.cache[key]
        if not path.is_file():
            return None, f"{s.cache[key]} is missing"
        if s.bucket and float(s.bucket.get("fps", fps)) != fps:
            return None, f"it was cached at {s.bucket['fps']} fps"
        return path, None
    return None, "it has " + ", ".join(sorted(s.cache))


class TrainData:
    """The checked samples of a prepare folder (module docstring)."""

    def __init__(self, prep: Path, cfg: Any, progress: Progress, cache_key: str | None = None):
        self.prep = Path(prep)
        self.cfg = cfg
        samples = read_manifest(self.prep)
        if not samples:
            raise InputError(f"{self.prep}: the manifest has no samples")
        key = cache_key if cfg.use_cache else None
        self.samples: list[Sample] = []
        self.cache: dict[str, Path] = {}
        self.skipped: list[dict[str, str]] = []
        for s in samples:
            if s.cache and key is not None:
                path, why = _cache_entry(self.prep, s, key, cfg.fps)
                if path is None:
                    raise InputError(
                        f"sample {s.sample_id}: cached tensors do not fit this run (want {key}; {why}): "
                        "run `ipvg prepare cache` for this model and size, or set use_cache=false"
                    )
                self.cache[s.sample_id] = path
            reason = self._problem(s)
            if reason:
                self.cache.pop(s.sample_id, None)
                self.skipped.append({"sample_id": s.sample_id, "reason": reason})
                progress.log(f"skipped sample {s.sample_id}: {reason}")
                continue
            self.samples.append(s)
        if not self.samples:
            raise InputError(
                f"{self.prep}: no usable sample ({len(self.skipped)} skipped; first: {self.skipped[0]['reason']})"
            )
        self.faces = self._read_faces() if cfg.method == "face-adapter" else {}
        self.face_dim = next(iter(self.faces.values())).shape[0] if self.faces else None
        self.all_cached = len(self.cache) == len(self.samples)
        self.none_cached = not self.cache

    def _read_faces(self) -> dict[str, torch.Tensor]:
        """Every sample's face embedding, read once; all of one dimension (one face backend)."""
        from ipvgkit.models.face_adapter import read_embedding

        faces = {
            s.sample_id: torch.from_numpy(read_embedding(self.prep / s.face_embedding)) for s in self.samples
        }
        dims = {int(f.shape[0]) for f in faces.values()}
        if len(dims) > 1:
            raise InputError(
                f"{self.prep}: face embeddings of several sizes {sorted(dims)} (mixed face backends)"
            )
        return faces

    def _problem(self, s: Sample) -> str | None:
        cfg = self.cfg
        need = (cfg.frames - 1) / cfg.fps
        if s.duration + 1e-6 < need:
            return f"clip is {s.duration:.2f}s, {cfg.frames} frames at {cfg.fps:g} fps need {need:.2f}s"
        if cfg.method == "reference-concat" and len(s.ref_images) < cfg.num_refs:
            return f"{len(s.ref_images)} reference image(s), the run uses {cfg.num_refs}"
        if cfg.method == "face-adapter" and not s.face_embedding:
            return "no face embedding (run ipvg prepare with the face extras installed)"
        if s.sample_id not in self.cache and not self.video_path(s).is_file():
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
        out = TrainSample(s.sample_id, s.caption, s.events)
        path = self.cache.get(s.sample_id)
        if path is not None:
            from safetensors.torch import load_file

            t = load_file(str(path))
            out.latents, out.prompt_embeds = t["latents"][0], t["prompt_embeds"][0]
            out.token_group = t["token_group"]
        else:
            clip = clip_pixels(s, self.video_path(s), cfg.frames, cfg.fps, cfg.height, cfg.width)
            out.frames = torch.from_numpy(clip)
        if cfg.method == "reference-concat":
            out.refs = [identity.open_image(self.prep / r) for r in s.ref_images[: cfg.num_refs]]
        out.face = self.faces.get(s.sample_id)
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


def training_inputs(model: Any, items: list, cfg: Any, device: torch.device) -> tuple[torch.Tensor, Any]:
    """(clean latents, :class:`~ipvgkit.models.training.Conditions`) of a micro-batch: cached tensors
    where the samples have them, else encoded by the model layer; a clip with events (``timeline``)
    gets the timeline context and processor state generation uses."""
    from ipvgkit.models.training import Conditions

    m = model
    lat = [it.latents if it.latents is not None else m.encode_video(it.frames[None])[0] for it in items]
    latents = torch.stack([x.to(device, torch.float32) for x in lat])
    ref = None
    if cfg.method == "reference-concat":
        refs = [
            it.ref_latents
            if it.ref_latents is not None
            else m.encode_reference([it.refs], cfg.height, cfg.width)[0]
            for it in items
        ]
        ref = torch.stack([r.to(device, torch.float32) for r in refs])
    n_ref = 0 if ref is None else ref.shape[2]
    face = None
    if cfg.method == "face-adapter":
        face = torch.stack([it.face for it in items]).to(device, torch.float32)
    if cfg.timeline and len(items) == 1 and items[0].events:
        it = items[0]
        if it.prompt_embeds is not None:  # prepare caches the timeline context (caption + events)
            embeds, groups = it.prompt_embeds[None], it.token_group
        else:
            ctx = m.timeline_context(it.caption, [e.text for e in it.events])
            embeds, groups = ctx.embeds, ctx.token_group
        state = m.timeline_state(it.events, groups, cfg.frames, cfg.fps, cfg.height, cfg.width, n_ref)
        return latents, Conditions(embeds.to(device), ref, state, face)
    texts = [
        it.prompt_embeds if it.prompt_embeds is not None and not it.events else m.encode_text([it.caption])[0]
        for it in items
    ]
    return latents, Conditions(torch.stack([t.to(device) for t in texts]), ref, face=face)
