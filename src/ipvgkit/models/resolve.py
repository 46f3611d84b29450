"""Turn ``ModelOptions.model`` into a local diffusers folder and the backend that runs it.

``model`` may be a built-in tiny model (``tiny-wan``, ``tiny-wan-i2v``, ``tiny-wan-vace``: written once
into the models directory), a local diffusers folder (has ``model_index.json``), or a Hugging Face hub
id (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``) that must already be in the local HF cache or be downloadable.
The pipeline class comes from ``model_index.json``'s ``_class_name``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ipvgkit import paths
from ipvgkit.errors import InputError, MissingWeightsError, UsageError
from ipvgkit.models import tiny

# pipeline class -> backend name
PIPELINE_BACKENDS = {
    "WanPipeline": "wan",
    "WanImageToVideoPipeline": "wan",
    "WanVACEPipeline": "wan-vace",
    "ConsisIDPipeline": "consisid",
}
BACKENDS = ("wan", "wan-vace", "consisid")


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: its folder, pipeline class name and where it came from."""

    folder: Path
    pipeline_class: str
    source: str  # "tiny" | "local" | "hub"
    name: str

    def component_config(self, component: str) -> dict:
        """The ``config.json`` of a component subfolder (``{}`` when absent)."""
        path = self.folder / component / "config.json"
        if not path.is_file():
            return {}
        return json.loads(path.read_text())

    def model_index(self) -> dict:
        return read_model_index(self.folder)


def read_model_index(folder: Path) -> dict:
    """Parse ``folder/model_index.json``; ``InputError`` when missing or malformed."""
    path = Path(folder) / "model_index.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{folder} is not a diffusers model folder: no model_index.json") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "_class_name" not in data:
        raise InputError(f"{path}: no _class_name (not a diffusers pipeline folder)")
    return data


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks for no network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download_hint(repo_id: str) -> str:
    return f"the Hugging Face hub: run `hf download {repo_id}` (or `huggingface-cli download {repo_id}`) on a machine with network, then copy the cache"


def resolve_hub_id(repo_id: str) -> Path:
    """The local snapshot folder of ``repo_id``: from the HF cache, else a download when allowed.

    Never hangs without network: with ``HF_HUB_OFFLINE=1`` only the cache is used, otherwise a
    connection error is turned into ``MissingWeightsError`` naming the id and how to download it.
    """
    from huggingface_hub import snapshot_download

    cache = paths.hf_cache_dir()
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError and friends: not cached
        if hub_offline():
            raise MissingWeightsError(
                f"{repo_id} (model_index.json)", [str(cache)], _download_hint(repo_id)
            ) from exc
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, etag_timeout=10))
    except Exception as exc:  # connection errors, 401/404, ...: one clear message
        raise MissingWeightsError(
            f"{repo_id} (model_index.json)", [str(cache)], f"{_download_hint(repo_id)} [{type(exc).__name__}]"
        ) from exc


def looks_like_hub_id(model: str) -> bool:
    """``owner/name`` with no path-like parts."""
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~")) and "\\" not in model


def resolve_model(model: str, models_dir: Path | str | None = None) -> ResolvedModel:
    """Find the model folder for ``model`` (see module docstring)."""
    if tiny.is_tiny(model):
        folder = tiny.materialise_tiny(model, paths.models_dir(models_dir))
        return ResolvedModel(folder, read_model_index(folder)["_class_name"], "tiny", model)
    local = Path(model).expanduser()
    if local.is_dir():
        return ResolvedModel(local, read_model_index(local)["_class_name"], "local", str(local))
    in_models_dir = paths.models_dir(models_dir) / model
    if in_models_dir.is_dir() and (in_models_dir / "model_index.json").is_file():
        return ResolvedModel(in_models_dir, read_model_index(in_models_dir)["_class_name"], "local", model)
    if looks_like_hub_id(model):
        folder = resolve_hub_id(model)
        return ResolvedModel(folder, read_model_index(folder)["_class_name"], "hub", model)
    raise UsageError(
        f"model {model!r} is neither a built-in ({', '.join(tiny.TINY_MODELS)}), a local diffusers folder "
        "(with model_index.json) nor a hub id of the form owner/name"
    )


def backend_for(resolved: ResolvedModel, backend: str) -> str:
    """The backend to use: ``auto`` follows the pipeline class; an explicit one must fit it."""
    natural = PIPELINE_BACKENDS.get(resolved.pipeline_class)
    if backend == "auto":
        if natural is None:
            raise UsageError(
                f"model {resolved.name!r} is a {resolved.pipeline_class}, which no backend runs; "
                f"supported pipelines: {', '.join(PIPELINE_BACKENDS)}"
            )
        return natural
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    if natural != backend:
        raise UsageError(
            f"backend {backend!r} cannot run model {resolved.name!r} (a {resolved.pipeline_class}); "
            f"use --backend auto or {natural or 'another model'}"
        )
    return backend
