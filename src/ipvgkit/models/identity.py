"""Identity conditioning: which mode a request uses, and the reference images' pixels and latents.

Modes (``ModelOptions.identity``):

* ``none``: text only; reference images are ignored.
* ``i2v``: the first reference image, resized and centre-cropped to the video size, is the first frame
  (Wan image-to-video checkpoints only).
* ``reference-concat``: each reference image's VAE latent is one clean extra latent frame prepended to the
  video latents (Phantom / Concat-ID idea), kept clean at every step and dropped before decoding (Wan
  text-to-video checkpoints; meaningful for a LoRA trained that way).
* ``vace``: the reference images go to ``WanVACEPipeline`` as ``reference_images`` (``wan-vace`` backend).
* ``consisid``: face embeddings + keypoints of the first reference image (``consisid`` backend).
* ``face-adapter``: the first reference image's face embedding through a trained face adapter
  (``--adapter DIR``, :mod:`ipvgkit.models.face_adapter`) as extra cross-attention tokens (Wan
  text-to-video checkpoints).
* ``auto``: ``wan-vace`` → ``vace``; ``consisid`` → ``consisid``; ``wan`` with reference images →
  ``reference-concat`` when ``ipvg_adapter.json`` (in the model folder or beside a LoRA) says
  ``{"identity": "reference-concat"}``, ``face-adapter`` when a face adapter is given, else ``i2v`` for an image-to-video checkpoint, else ``none``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipvgkit.errors import InputError, UsageError
from ipvgkit.models.base import Identity, values

IDENTITY_MODES = values(Identity)
ADAPTER_FILE = "ipvg_adapter.json"

# modes each backend (and Wan variant) can run
SUPPORTED = {
    "wan-t2v": (Identity.none, Identity.reference_concat, Identity.face_adapter),
    "wan-i2v": (Identity.i2v,),
    "wan-vace": (Identity.none, Identity.vace),
    "consisid": (Identity.consisid,),
}


def read_adapter_info(model_folder: Path | None, lora_paths: Sequence[Path]) -> dict:
    """The first ``ipvg_adapter.json`` found beside a LoRA (its folder, or a file's folder), else in the
    model folder; ``{}`` when there is none."""
    candidates = []
    for p in lora_paths:
        p = Path(p)
        candidates.append((p if p.is_dir() else p.parent) / ADAPTER_FILE)
    if model_folder is not None:
        candidates.append(Path(model_folder) / ADAPTER_FILE)
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: not valid JSON ({exc})") from exc
            if not isinstance(data, dict):
                raise InputError(f'{path}: expected a JSON object like {{"identity": "reference-concat"}}')
            return {**data, "_path": str(path)}
    return {}


def resolve_identity(requested: str, variant: str, has_refs: bool, adapter: dict) -> str:
    """The mode a request runs with (module docstring); ``UsageError`` for a mode the variant lacks."""
    if requested not in IDENTITY_MODES:
        raise UsageError(f"unknown identity mode {requested!r}; choose one of {', '.join(IDENTITY_MODES)}")
    supported = SUPPORTED[variant]
    if requested == Identity.auto:
        if variant == "wan-vace":
            return (Identity.vace if has_refs else Identity.none).value
        if variant == "consisid":
            return Identity.consisid.value
        if variant == "wan-i2v":
            return Identity.i2v.value
        if has_refs and adapter.get("identity") in (Identity.reference_concat, Identity.face_adapter):
            return adapter["identity"]
        return Identity.none.value
    if requested not in supported:
        raise UsageError(
            f"identity {requested!r} is not available for this model ({variant}); use one of {', '.join(supported)} or auto"
        )
    return str(requested)


def face_adapter_for(options: Any, variant: str) -> Any:
    """The face adapter of ``options.adapter`` (:class:`ipvgkit.models.face_adapter.GenerationAdapter`),
    None without one; ``--identity face-adapter`` without ``--adapter`` is a usage error, and so is an
    adapter on a model variant that cannot run it."""
    if options.adapter is not None and Identity.face_adapter not in SUPPORTED[variant]:
        raise UsageError(f"--adapter (a face adapter) runs on Wan text-to-video checkpoints, not {variant}")
    if options.adapter is None:
        if options.identity == Identity.face_adapter:
            raise UsageError(
                "--identity face-adapter needs --adapter DIR (a face adapter from ipvg finetune)"
            )
        return None
    from ipvgkit.models.face_adapter import GenerationAdapter

    return GenerationAdapter(Path(options.adapter), options.models_dir)


def open_image(path: Path) -> Any:
    """Open an image as RGB with PIL (EXIF orientation applied); ``InputError`` when it cannot be read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError as exc:
        raise InputError(f"reference image not found: {path}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"reference image {path} cannot be read: {exc}") from exc


def fit_image(image: Any, width: int, height: int) -> Any:
    """Resize (keeping the aspect ratio, covering the target) and centre-crop to ``width x height``."""
    from PIL import Image

    scale = max(width / image.width, height / image.height)
    new = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    resized = image.resize(new, Image.Resampling.BICUBIC)
    left = (new[0] - width) // 2
    top = (new[1] - height) // 2
    return resized.crop((left, top, left + width, top + height))


def reference_latents(
    pipe: Any, images: Sequence[Any], height: int, width: int, device: Any, dtype: Any
) -> Any:
    """VAE latents ``(1, C, n_images, h, w)`` of the images (each one latent frame), normalised like Wan's
    video latents (``(z - mean) / std``)."""
    import torch
    from diffusers.utils.torch_utils import get_module_execution_device

    vae = pipe.vae
    vae_device = get_module_execution_device(vae)
    pixels = [pipe.video_processor.preprocess(im, height=height, width=width) for im in images]  # (1,3,H,W)
    lat = []
    for px in pixels:
        with torch.no_grad():  # a frozen encoder: no autograd graph kept with the latents
            dist = vae.encode(px.unsqueeze(2).to(device=vae_device, dtype=vae.dtype)).latent_dist
        lat.append(dist.mode())
    z = torch.cat(lat, dim=2).to(device=device, dtype=torch.float32)
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    return ((z - mean) / std).to(dtype)
