"""Face detection, alignment and embedding backends shared by the face metrics and the generators.

Cheap to import (numpy only); each backend imports its heavy library when it is built.

- :class:`Face`, :class:`FaceBackend`: the detected-face record and the backend protocol.
- :func:`get_backend` (``"buffalo_l"``, ``"antelopev2"``, ``"dlib"``, ``"dlib:cnn"``): loaded once.
- :func:`detect_largest`: largest face, with the gray-pad retry of SPEC §4 (0.25 of h/w per side).
- :func:`norm_crop` / :func:`aligned_crop` / :func:`unpadded_crop`: 5-keypoint alignment to the ArcFace
  template (112, 224, ...), on the detector's (maybe padded) input or on the image itself.
- :func:`get_backend` loads each backend once (the scorer's detection cache: ``ipvgkit.metrics.samples``).

Importing this package registers the face weight files in ``ipvgkit.weights.REGISTRY``.
"""

from __future__ import annotations

from ipvgkit.faces import files  # noqa: F401 - registers the weight files
from ipvgkit.faces.align import estimate_norm, norm_crop
from ipvgkit.faces.backends import BACKENDS, clear_loaded, get_backend
from ipvgkit.faces.base import (
    Face,
    FaceBackend,
    aligned_crop,
    detect_largest,
    l2_normalize,
    largest_face,
    pad_image,
    source_image,
    unpadded_crop,
)

__all__ = [
    "BACKENDS",
    "Face",
    "FaceBackend",
    "aligned_crop",
    "clear_loaded",
    "detect_largest",
    "estimate_norm",
    "get_backend",
    "l2_normalize",
    "largest_face",
    "norm_crop",
    "pad_image",
    "source_image",
    "unpadded_crop",
]
