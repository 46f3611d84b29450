"""Face backends by name, loaded once per process (the scorer's per-video detection cache is
:mod:`ipvgkit.metrics.samples`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipvgkit.errors import UsageError
from ipvgkit.faces.base import FaceBackend

BACKENDS = ("buffalo_l", "antelopev2", "dlib", "dlib:hog", "dlib:cnn")
_LOADED: dict[tuple, Any] = {}


def get_backend(
    name: str, models_dir: Path | str | None = None, device: str = "cpu", path: Path | str | None = None
) -> FaceBackend:
    """The face backend ``name`` (one of :data:`BACKENDS`), loaded once per process and reused.

    ``path`` is an explicit insightface pack folder (e.g. a ConsisID model's ``face_encoder/models/antelopev2``)
    used instead of searching the models dir. Raises ``MissingWeightsError`` (naming the file and where to
    get it) when the weights are absent.
    """
    from ipvgkit.faces import files
    from ipvgkit.weights import locate

    if name not in BACKENDS:
        raise UsageError(f"unknown face backend {name!r} (known: {', '.join(BACKENDS)})")
    if name in files.PACKS:
        path = Path(path) if path is not None else locate(files.PACKS[name], models_dir)
        key = (name, str(path.resolve()), device)
        if key not in _LOADED:
            from ipvgkit.faces.insight import InsightFaceBackend

            _LOADED[key] = InsightFaceBackend(path, device=device)
        return _LOADED[key]
    detector = name.split(":", 1)[1] if ":" in name else "hog"
    key = (f"dlib:{detector}", str(models_dir), device)
    if key not in _LOADED:
        from ipvgkit.faces.dlib_backend import DlibBackend

        _LOADED[key] = DlibBackend(detector=detector, models_dir=models_dir)
    return _LOADED[key]


def clear_loaded() -> None:
    """Forget every loaded backend (frees their sessions)."""
    _LOADED.clear()
