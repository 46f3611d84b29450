"""The face-backend protocol, the detected-face record, largest-face choice and the padded retry.

A backend detects faces on an RGB uint8 image and embeds them (L2-normalised vectors). Detection
follows SPEC §4 (ConsisID's ``pad_np_bgr_image(scale=1.25)``): keep the largest box; if nothing is
found, pad **each side** with gray (128): ``int(h*0.25)`` rows top and bottom, ``int(w*0.25)`` columns
left and right (a 1.5x canvas), detect once more and shift the box and keypoints back by (left, top).

Two crops follow from a face found on the padded canvas: :func:`aligned_crop` is the crop the
detector pass's recogniser saw (cut from the padded canvas: the ArcFace embedding of the reference
code), :func:`unpadded_crop` is cut from the image itself with the shifted keypoints (parts outside
the image come out black, ``norm_crop``'s border 0: the 224 crop of FaceSim-Cur and the InceptionV3
feature distance).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

PAD_PER_SIDE = 0.25  # share of the height (width) added above and below (left and right)
PAD_VALUE = 128


@dataclass
class Face:
    """One detected face. ``bbox`` is x1, y1, x2, y2 in pixels; ``kps`` is (5, 2) x, y.

    ``kps_format`` says what the 5 points are: ``"arcface5"`` (left eye, right eye, nose, left and right
    mouth corners: what :func:`ipvgkit.faces.align.norm_crop` needs) or ``"dlib5"`` (dlib's 5-point
    shape: two corners of each eye and the bottom of the nose). ``extra`` holds backend-specific data
    (e.g. dlib's full-object detection, needed for its own chip alignment).
    """

    bbox: np.ndarray
    kps: np.ndarray | None
    score: float
    kps_format: str = "arcface5"
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def area(self) -> float:
        """Box area in square pixels (0 for a degenerate box)."""
        w = max(0.0, float(self.bbox[2] - self.bbox[0]))
        h = max(0.0, float(self.bbox[3] - self.bbox[1]))
        return w * h

    def shifted(self, dx: float, dy: float) -> Face:
        """The same face with its box and keypoints moved by (dx, dy) (used to undo the padding)."""
        off = np.array([dx, dy], dtype=np.float32)
        bbox = np.asarray(self.bbox, dtype=np.float32) + np.concatenate([off, off])
        kps = None if self.kps is None else np.asarray(self.kps, dtype=np.float32) + off
        return Face(bbox=bbox, kps=kps, score=self.score, kps_format=self.kps_format, extra=dict(self.extra))


@runtime_checkable
class FaceBackend(Protocol):
    """What every face backend offers (insightface packs, dlib)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 (H, W, 3) image, in the image's pixel coordinates."""
        ...

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(len(faces), D) float32 L2-normalised embeddings of ``faces`` found in the RGB ``image``."""
        ...


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box area, or None for an empty list.

    Of equal areas the *last* one in detector order (by score, highest first) is kept: the reference code
    takes ``sorted(faces, key=area)[-1]``, and a stable sort keeps ties in their order. The area is
    computed in float32 from the box as the reference does (``(x2 - x1) * (y2 - y1)``).
    """
    if not faces:
        return None
    areas = [float(np.float32(f.bbox[2] - f.bbox[0]) * np.float32(f.bbox[3] - f.bbox[1])) for f in faces]
    best = max(areas)
    return faces[max(i for i, a in enumerate(areas) if a == best)]


def pad_image(
    image: np.ndarray, per_side: float = PAD_PER_SIDE, value: int = PAD_VALUE
) -> tuple[np.ndarray, int, int]:
    """``image`` with ``int(h*per_side)`` gray rows above and below and ``int(w*per_side)`` columns left
    and right; returns (canvas, left, top)."""
    h, w = image.shape[:2]
    top, left = int(h * per_side), int(w * per_side)
    canvas = np.full((h + 2 * top, w + 2 * left) + image.shape[2:], value, dtype=image.dtype)
    canvas[top : top + h, left : left + w] = image
    return canvas, left, top


def detect_largest(backend: FaceBackend, image: np.ndarray, pad_retry: bool = True) -> Face | None:
    """The largest face in ``image``; with ``pad_retry`` a second try on the gray-padded image (SPEC §4).

    A face found on the padded image has its box and keypoints mapped back to ``image``'s coordinates
    and ``extra["pad_offset"] = (left, top)`` (see :func:`source_image`).
    """
    face = largest_face(backend.detect(image))
    if face is not None or not pad_retry:
        return face
    canvas, left, top = pad_image(image)
    face = largest_face(backend.detect(canvas))
    if face is None:
        return None
    back = face.shifted(-left, -top)
    back.extra["pad_offset"] = (left, top)
    back.extra["padded_kps"] = face.kps
    return back


def source_image(image: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray | None]:
    """The image a face was found on and its keypoints there.

    For a face found on the gray-padded image that is the padded canvas again with the keypoints the
    detector gave there (so an aligned crop reaching past the frame edge shows gray, as on the
    detector's input), else ``image`` itself.
    """
    offset = face.extra.get("pad_offset")
    if not offset:
        return image, face.kps
    canvas, left, top = pad_image(image)
    kps = face.extra.get("padded_kps")
    if kps is None and face.kps is not None:
        kps = np.asarray(face.kps, dtype=np.float32) + np.array([left, top], np.float32)
    return canvas, kps


def _check_arcface5(face: Face) -> None:
    if face.kps is None or face.kps_format != "arcface5":
        raise ValueError(
            f"an aligned crop needs ArcFace 5-point keypoints, this face has {face.kps_format!r}"
        )


def aligned_crop(image: np.ndarray, face: Face, size: int = 112) -> np.ndarray:
    """The face aligned to a ``size`` square on the image the detector found it on (channel order kept).

    For a face found on the padded retry that is the gray canvas (what the detector pass's recogniser
    embeds), else ``image`` itself.
    """
    from ipvgkit.faces.align import norm_crop

    _check_arcface5(face)
    src, kps = source_image(image, face)
    return norm_crop(src, kps, size)


def unpadded_crop(image: np.ndarray, face: Face, size: int = 224) -> np.ndarray:
    """The face aligned to a ``size`` square cut from ``image`` itself with the (shifted-back) keypoints.

    A face found on the padded retry reaches past the image edge: those parts are black (``norm_crop``'s
    border value 0), as in the reference code's 224 crop.
    """
    from ipvgkit.faces.align import norm_crop

    _check_arcface5(face)
    return norm_crop(image, face.kps, size)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (float32)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
