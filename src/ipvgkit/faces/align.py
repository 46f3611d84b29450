"""Face alignment by 5 keypoints: a similarity transform onto the ArcFace template, then ``cv2.warpAffine``.

Equivalent to ``insightface.utils.face_align.norm_crop`` (same template, same Umeyama estimate, same
warp and zero border), written once here so every backend and metric aligns the same way. Keypoints are
in the ArcFace order: left eye, right eye (image left/right), nose tip, left and right mouth corners.
"""

from __future__ import annotations

import numpy as np

# insightface's 112x112 ArcFace template (x, y).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping src to dst (3x3)."""
    num, dim = src.shape
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_demean = src - src_mean
    dst_demean = dst - dst_mean
    a = dst_demean.T @ src_demean / num
    d = np.ones((dim,), dtype=np.float64)
    if np.linalg.det(a) < 0:
        d[dim - 1] = -1
    t = np.eye(dim + 1, dtype=np.float64)
    u, s, v = np.linalg.svd(a)
    tol = s.max() * np.max(a.shape) * np.finfo(float).eps
    rank = np.count_nonzero(s > tol)
    if rank == 0:
        return np.nan * t
    if rank == dim - 1:
        if np.linalg.det(u) * np.linalg.det(v) > 0:
            t[:dim, :dim] = u @ v
        else:
            saved = d[dim - 1]
            d[dim - 1] = -1
            t[:dim, :dim] = u @ np.diag(d) @ v
            d[dim - 1] = saved
    else:
        t[:dim, :dim] = u @ np.diag(d) @ v
    scale = 1.0 / src_demean.var(axis=0).sum() * (s @ d)
    t[:dim, dim] = dst_mean - scale * (t[:dim, :dim] @ src_mean.T)
    t[:dim, :dim] *= scale
    return t


def template(image_size: int = 112) -> np.ndarray:
    """The 5-point template for an ``image_size`` crop (112 scaled for multiples of 112; 128-style offset)."""
    if image_size % 112 == 0:
        ratio, diff_x = image_size / 112.0, 0.0
    elif image_size % 128 == 0:
        ratio = image_size / 128.0
        diff_x = 8.0 * ratio
    else:
        raise ValueError(f"aligned crop size must be a multiple of 112 or 128, got {image_size}")
    dst = ARCFACE_TEMPLATE * ratio
    dst[:, 0] += diff_x
    return dst


def estimate_norm(kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The 2x3 affine matrix taking the 5 keypoints ``kps`` onto the template of an ``image_size`` crop."""
    kps = np.asarray(kps)
    if kps.shape != (5, 2):
        raise ValueError(f"expected 5 keypoints of shape (5, 2), got {kps.shape}")
    return _umeyama(kps, template(image_size))[0:2, :]


def norm_crop(image: np.ndarray, kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The face warped to an ``image_size`` square by its 5 keypoints (channel order unchanged)."""
    import cv2

    m = estimate_norm(kps, image_size)
    return cv2.warpAffine(image, m, (image_size, image_size), borderValue=0.0)
