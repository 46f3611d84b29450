"""dlib face backend: HOG (or CNN/MMOD) detector, 5-point shape predictor, 128-d ResNet embedding.

The weight files ship with the PyPI package ``face-recognition-models`` (located through
``importlib.util.find_spec``: importing that package needs ``pkg_resources``); ``dlib-bin`` provides dlib.
The only face-embedding model available fully offline. dlib's own convention: Euclidean distance of
two descriptors < 0.6 means the same person.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ipvgkit.errors import MissingDependencyError, UsageError
from ipvgkit.faces.base import Face, l2_normalize, source_image
from ipvgkit.faces.files import DLIB_MMOD, DLIB_RESNET, DLIB_SHAPE5
from ipvgkit.weights import locate

DETECTORS = ("hog", "cnn")


def _import_dlib():
    try:
        import dlib
    except ImportError as e:
        raise MissingDependencyError(
            f"the dlib backend needs dlib ({e}): pip install 'ipvgkit[dlib]' (dlib-bin face-recognition-models)"
        ) from e
    return dlib


class DlibBackend:
    """dlib detection (largest box kept by the caller) and 128-d descriptors with dlib's own chip alignment."""

    def __init__(self, detector: str = "hog", upsample: int = 1, models_dir: Path | str | None = None):
        if detector not in DETECTORS:
            raise UsageError(f"unknown dlib detector {detector!r} (known: {', '.join(DETECTORS)})")
        dlib = _import_dlib()
        self.name = f"dlib:{detector}"
        self.detector_kind = detector
        self.upsample = int(upsample)
        if detector == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(str(locate(DLIB_MMOD, models_dir)))
            self._hog = None
        else:
            self._hog = dlib.get_frontal_face_detector()
            self._cnn = None
        self._shape = dlib.shape_predictor(str(locate(DLIB_SHAPE5, models_dir)))
        self._encoder = dlib.face_recognition_model_v1(str(locate(DLIB_RESNET, models_dir)))

    def _rects(self, image: np.ndarray) -> list[tuple[object, float]]:
        if self._cnn is not None:
            return [(d.rect, float(d.confidence)) for d in self._cnn(image, self.upsample)]
        rects, scores, _ = self._hog.run(image, self.upsample, 0.0)
        return list(zip(rects, (float(s) for s in scores), strict=True))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image; ``kps`` are dlib's 5 shape points (``kps_format="dlib5"``)."""
        image = np.ascontiguousarray(image)
        faces = []
        for rect, score in self._rects(image):
            shape = self._shape(image, rect)
            kps = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float32)
            bbox = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float32)
            faces.append(
                Face(bbox=bbox, kps=kps, score=score, kps_format="dlib5", extra={"dlib_shape": shape})
            )
        return faces

    def descriptors(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(len(faces), 128) raw dlib descriptors (not normalised: dlib's distances are on these)."""
        out = []
        for face in faces:
            src, _ = source_image(image, face)
            vec = self._encoder.compute_face_descriptor(np.ascontiguousarray(src), face.extra["dlib_shape"])
            out.append(np.asarray(vec, dtype=np.float32))
        return np.stack(out) if out else np.zeros((0, 128), np.float32)

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(len(faces), 128) L2-normalised dlib descriptors."""
        return l2_normalize(self.descriptors(image, faces)) if faces else np.zeros((0, 128), np.float32)
