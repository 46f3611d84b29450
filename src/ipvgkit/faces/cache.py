"""Backends loaded once per process, and per-video detections shared by the face metrics.

Detections live in the scorer's per-video ``sample.cache`` under ``("faces", backend.name, frame_idx)``
(the largest face of that frame after the padded retry, or None) and ``("ref_faces", backend.name)``
(one entry per reference image), so two metrics using the same backend detect each frame once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.errors import UsageError
from ipvgkit.faces.base import Face, FaceBackend, detect_largest

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


def frame_faces(sample: Any, backend: FaceBackend, indices: Sequence[int]) -> dict[int, Face | None]:
    """The largest face (or None) of each frame in ``indices`` of ``sample``, detected once per backend."""
    cache = sample.cache
    todo = [i for i in dict.fromkeys(indices) if ("faces", backend.name, i) not in cache]
    if todo:
        frames = sample.frames(todo)
        for i, frame in zip(todo, frames, strict=True):
            cache[("faces", backend.name, i)] = detect_largest(backend, frame)
    return {i: cache[("faces", backend.name, i)] for i in indices}


def ref_faces(sample: Any, backend: FaceBackend) -> list[Face | None]:
    """The largest face (or None) of each reference image of ``sample``, detected once per backend."""
    key = ("ref_faces", backend.name)
    if key not in sample.cache:
        sample.cache[key] = [detect_largest(backend, img) for img in sample.ref_images()]
    return sample.cache[key]


def first_ref_face(sample: Any, backend: FaceBackend) -> tuple[int, Face] | None:
    """(index, face) of the first reference image with a face, or None when none has one."""
    for i, face in enumerate(ref_faces(sample, backend)):
        if face is not None:
            return i, face
    return None


def cached_frames(sample: Any, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Frames by index (the scorer decodes the union of all metrics' indices once)."""
    frames = sample.frames(list(indices))
    return dict(zip(indices, frames, strict=True))
