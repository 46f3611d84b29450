"""Where ipvgkit looks for model weights.

Order: an explicit ``--models-dir``; ``$IPVG_MODELS``; ``~/.cache/ipvg/models``. Metric and model
backends may also look in the Hugging Face cache (``$HF_HOME`` / ``$HF_HUB_CACHE``) for hub ids.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_models_dir() -> Path:
    env = os.environ.get("IPVG_MODELS")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/ipvg/models").expanduser()


def models_dir(override: Path | str | None = None) -> Path:
    """The models directory to use (not created)."""
    if override:
        return Path(override).expanduser()
    return default_models_dir()


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    return home / "hub"
