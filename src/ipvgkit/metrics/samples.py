"""Per-video face detections shared by the face metrics through the scorer's ``sample.cache``.

Detections live under ``("faces", backend.name, frame_idx)`` (the largest face of that frame after
the padded retry, or None) and ``("ref_faces", backend.name)`` (one entry per reference image), so
two metrics using the same backend detect each frame once (and each reference once per run: ``ref_*``
entries are shared by the videos of one identity, see :class:`ipvgkit.metrics.base.SampleCache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ipvgkit.faces.base import Face, FaceBackend, detect_largest, unpadded_crop


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


def frame_crops(
    sample: Any, backend: FaceBackend, indices: Sequence[int], faces: Sequence[Face], size: int
) -> list[np.ndarray]:
    """The ``size`` aligned crop of the face of each frame in ``indices``, cut from the unpadded frame
    (:func:`ipvgkit.faces.base.unpadded_crop`) once per frame and backend and kept in ``sample.cache``
    under ``("crop<size>", backend.name, frame_idx)``, so every metric reading that crop shares it."""
    kind = f"crop{size}"
    cache = sample.cache
    todo = [(i, f) for i, f in zip(indices, faces, strict=True) if (kind, backend.name, i) not in cache]
    if todo:
        for (i, f), frame in zip(todo, sample.frames([i for i, _ in todo]), strict=True):
            cache[(kind, backend.name, i)] = unpadded_crop(frame, f, size)
    return [cache[(kind, backend.name, i)] for i in indices]
