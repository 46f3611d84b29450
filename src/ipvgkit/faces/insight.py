"""insightface model packs (``buffalo_l``, ``antelopev2``): SCRFD detector + ArcFace recogniser.

Only the detector and the recogniser of a pack are loaded (the landmark and gender/age models change
no number, SPEC §4). Each ONNX file goes through insightface's own ``model_zoo.get_model`` router
(which tells models apart by their input/output shapes), so the real insightface code runs. The
detector works on the BGR image (insightface's convention); this class takes RGB and converts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ipvgkit.errors import InputError, MissingDependencyError
from ipvgkit.faces.base import Face, aligned_crop, l2_normalize

# Known file names of the detector and recogniser per pack (others are routed by shape).
KNOWN_FILES = {
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
}
DET_SIZE = (320, 320)


def _providers(device: str) -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if (device == "auto" or device.startswith("cuda")) and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _candidate_files(pack_dir: Path) -> list[Path]:
    """The pack's ONNX files, the known detector/recogniser names first."""
    files = sorted(pack_dir.glob("*.onnx"))
    known = KNOWN_FILES.get(pack_dir.name, ())
    first = [pack_dir / n for n in known if (pack_dir / n).is_file()]
    if len(first) == 2:
        return first
    return first + [f for f in files if f not in first]


class InsightFaceBackend:
    """Detect with the pack's SCRFD, embed with its ArcFace (112x112 ``norm_crop`` of the BGR image)."""

    def __init__(
        self,
        pack_dir: Path | str,
        device: str = "cpu",
        det_size: tuple[int, int] = DET_SIZE,
        det_thresh: float = 0.5,
    ):
        try:
            from insightface.model_zoo import model_zoo
        except ImportError as e:
            raise MissingDependencyError(
                f"the insightface backend needs insightface and onnxruntime ({e}): "
                "pip install 'ipvgkit[insightface]'"
            ) from e
        self.pack_dir = Path(pack_dir)
        self.name = f"insightface:{self.pack_dir.name}"
        self.det_size = tuple(det_size)
        providers = _providers(device)
        self.detector = None
        self.recognizer = None
        for onnx_file in _candidate_files(self.pack_dir):
            model = model_zoo.get_model(str(onnx_file), providers=providers)
            task = getattr(model, "taskname", None)
            if task == "detection" and self.detector is None:
                self.detector = model
            elif task == "recognition" and self.recognizer is None:
                self.recognizer = model
            if self.detector is not None and self.recognizer is not None:
                break
        missing = [k for k, v in (("detector", self.detector), ("recogniser", self.recognizer)) if v is None]
        if missing:
            raise InputError(
                f"insightface pack {self.pack_dir} has no {' and no '.join(missing)} ONNX model "
                f"(found: {', '.join(p.name for p in sorted(self.pack_dir.glob('*.onnx'))) or 'no .onnx files'})"
            )
        if not getattr(self.detector, "use_kps", True):
            raise InputError(
                f"insightface pack {self.pack_dir}: the detector gives no keypoints (needed to align)"
            )
        ctx_id = 0 if providers[0].startswith("CUDA") else -1
        self.detector.prepare(ctx_id, input_size=self.det_size, det_thresh=det_thresh)
        self.recognizer.prepare(ctx_id)
        self.crop_size = int(self.recognizer.input_size[0])

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (boxes and ArcFace-order keypoints in pixels)."""
        bgr = np.ascontiguousarray(image[..., ::-1])
        bboxes, kpss = self.detector.detect(bgr, input_size=self.det_size)
        faces = []
        for i in range(bboxes.shape[0]):
            kps = None if kpss is None else np.asarray(kpss[i], dtype=np.float32)
            faces.append(Face(bbox=np.asarray(bboxes[i, :4], np.float32), kps=kps, score=float(bboxes[i, 4])))
        return faces

    def align(self, image: np.ndarray, faces: list[Face], size: int | None = None) -> list[np.ndarray]:
        """BGR aligned crops (``norm_crop`` of the BGR image, as insightface does) of ``faces``."""
        bgr = np.ascontiguousarray(image[..., ::-1])
        return [aligned_crop(bgr, f, size or self.crop_size) for f in faces]

    def embed_crops(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised ArcFace embeddings of BGR aligned crops (insightface's ``get_feat``)."""
        if not crops_bgr:
            return np.zeros((0, 0), np.float32)
        return l2_normalize(self.recognizer.get_feat(list(crops_bgr)))

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(len(faces), D) L2-normalised ArcFace embeddings of ``faces`` in the RGB ``image``."""
        return self.embed_crops(self.align(image, faces))
