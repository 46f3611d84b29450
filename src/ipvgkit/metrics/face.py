"""Face metrics (SPEC §4): ``facesim_arc``, ``facesim_cur``, ``face_feat_dist``, ``fid``, ``facesim_dlib``.

Common rules:

- Frames: ``n_frames`` (16) at ``linspace(0, n-1, n_frames)`` cast to int (repeats kept, as the 2025 code).
- Detection: the largest face, with one retry on the image padded with gray (128) by 0.25 of its height
  (width) on each side; detections are shared between metrics through ``sample.cache``
  (:mod:`ipvgkit.metrics.samples`). ArcFace embeds the detector pass's crop (on the padded canvas for a
  face found there); the 224 crop of CurricularFace and InceptionV3 is cut from the unpadded frame
  (black outside it) once per frame and shared by both.
- Reference: the first reference image with a face. None has one: ``value=None`` and
  ``error="no face in reference image ..."``.
- A frame without a face is skipped and counted (``extra["frames_no_face"]``); the video's value is the
  mean over frames with a face, and 0.0 when no frame had one (for the similarities; the distance
  ``face_feat_dist`` has no value then, since 0 would read as a perfect match). ``extra["no_face"]`` is
  True for such a video.
- ``no_face_quirk`` (set by ``--preset consisid``): the 2025 code's 0.0 for all three face metrics when
  no sampled frame has a face - the distance too, although 0 is its best value. The result says so in
  ``extra["quirk"]``; the scorer flags the row and counts such videos in the summary.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ipvgkit.devices import resolve_device
from ipvgkit.faces import files
from ipvgkit.faces.backends import get_backend
from ipvgkit.faces.base import Face, unpadded_crop
from ipvgkit.media.video import sample_indices as linspace_indices  # SPEC §4 sampling, repeats kept
from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.opens2v import opens2v_ref_face, opens2v_skip
from ipvgkit.metrics.registry import register
from ipvgkit.metrics.samples import first_ref_face, frame_crops, frame_faces
from ipvgkit.weights import ModelFile, locate

DLIB_SAME_PERSON = 0.6  # dlib's own threshold on the Euclidean distance of two descriptors
CROP_SIZE = 224  # the aligned crop CurricularFace and InceptionV3 read (SPEC §4)
NO_FACE_QUIRK = (
    "no face in any sampled frame: 0.0 as the 2025 reference code gives (for face_feat_dist 0 is the "
    "best value: a faceless video is rewarded)"
)


def cosine_clamped(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max(0, cosine) of each row of ``b`` with the vector ``a`` (both L2-normalised or not)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).reshape(-1, a.size)
    cos = b @ a / np.maximum(np.linalg.norm(b, axis=1) * np.linalg.norm(a), 1e-12)
    return np.maximum(cos, 0.0)


def dlib_similarity(distance: np.ndarray | float) -> np.ndarray:
    """dlib distance -> similarity in [0, 1]: ``max(0, 1 - d / 1.2)`` (dlib's 0.6 threshold maps to 0.5)."""
    return np.maximum(0.0, 1.0 - np.asarray(distance, np.float64) / (2 * DLIB_SAME_PERSON))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance of two Gaussians (as pytorch-fid: ``scipy.linalg.sqrtm``, eps offset if singular)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(real: np.ndarray, gen: np.ndarray) -> float:
    """FID of two feature sets (rows = samples; each needs at least 2 rows for a covariance)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), gen.mean(0), np.cov(gen, rowvar=False))


class _FaceMetric(Metric):
    """Shared frame sampling, reference handling and frame loop; subclasses say how a face is scored."""

    family = "face"
    backend_name = "buffalo_l"
    zero_if_no_face = True

    def __init__(
        self,
        n_frames: int = 16,
        skip_zero: bool = False,
        backend: str | None = None,
        opens2v_cases: bool = False,
        no_face_quirk: bool = False,
    ):
        self.n_frames = int(n_frames)
        self.skip_zero = bool(skip_zero)
        self.opens2v_cases = bool(opens2v_cases)  # OpenS2V-Eval's human-only cases and reference choice
        self.no_face_quirk = bool(no_face_quirk)
        if backend is not None:
            self.backend_name = backend
        self.backend: Any = None
        self.device = "cpu"
        self.batch_size = 16

    def options(self) -> dict:
        opts = {"n_frames": self.n_frames, "skip_zero": self.skip_zero, "backend": self.backend_name}
        if self.opens2v_cases:
            opts["opens2v_cases"] = True
        if self.no_face_quirk:
            opts["no_face_quirk"] = True
        return opts

    def model_files(self) -> list[ModelFile]:
        if self.backend_name in files.PACKS:
            return [files.PACKS[self.backend_name]]
        return [files.DLIB_SHAPE5, files.DLIB_RESNET] + (
            [files.DLIB_MMOD] if "cnn" in self.backend_name else []
        )

    def frame_indices(self, n_frames: int) -> list[int]:
        return linspace_indices(n_frames, self.n_frames)

    def load(self, ctx: MetricContext) -> None:
        self.device = ctx.device
        self.batch_size = ctx.batch_size
        self.backend = get_backend(self.backend_name, ctx.models_dir, ctx.device)

    # -- what subclasses define ------------------------------------------------------------------
    feature_key = ""  # what ``features`` computes; rows are cached per video under this key

    @abstractmethod
    def features(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        """One row (embedding or feature vector) per face; ``faces[k]`` was found in the RGB ``images[k]``."""

    def scores(self, ref: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """One score per row of ``frames`` against the reference row ``ref`` (default: max(0, cosine))."""
        return cosine_clamped(ref, frames)

    # -- shared loop -----------------------------------------------------------------------------
    def _ref_feature(self, sample: VideoSample) -> tuple[np.ndarray, int] | None:
        key = ("ref_feature", self.feature_key, self.backend.name, self.opens2v_cases)
        if key not in sample.cache:
            found = (
                opens2v_ref_face(sample, self.backend)
                if self.opens2v_cases
                else first_ref_face(sample, self.backend)
            )
            if found is None:
                sample.cache[key] = None
            else:
                i, face = found
                sample.cache[key] = (self.features([sample.ref_images()[i]], [face])[0], i)
        return sample.cache[key]

    def _frame_features(self, sample: VideoSample) -> tuple[list[int], list[int], np.ndarray | None]:
        """(frames with a face, frames without, their feature rows)."""
        indices = self.frame_indices(sample.n_frames)
        faces = frame_faces(sample, self.backend, indices)
        with_face = [i for i in indices if faces[i] is not None]
        no_face = [i for i in indices if faces[i] is None]
        if not with_face:
            return with_face, no_face, None
        cache = sample.cache
        key = (self.feature_key, self.backend.name)
        todo = [i for i in dict.fromkeys(with_face) if key + (i,) not in cache]
        if todo:
            rows = self.frame_rows(sample, todo, [faces[i] for i in todo])
            for i, row in zip(todo, rows, strict=True):
                cache[key + (i,)] = row
        return with_face, no_face, np.stack([cache[key + (i,)] for i in with_face])

    def frame_rows(self, sample: VideoSample, indices: list[int], faces: list[Face]) -> np.ndarray:
        """Feature rows of the faces of frames ``indices`` (default: :meth:`features` on the frames)."""
        return self.features(list(sample.frames(indices)), faces)

    def _no_face(self, extra: dict) -> MetricResult:
        extra["no_face"] = True
        if self.no_face_quirk:
            return MetricResult(value=0.0, extra={**extra, "quirk": NO_FACE_QUIRK})
        if self.zero_if_no_face:
            return MetricResult(value=0.0, extra=extra)
        return MetricResult(value=None, extra=extra, error="no face in any sampled frame")

    def _no_ref(self, sample: VideoSample) -> MetricResult:
        names = ", ".join(Path(p).name for p in sample.case.ref_images) or "(none given)"
        return MetricResult(
            value=None, error=f"no face in reference image {names} (case skipped for {self.name})"
        )

    def compute(self, sample: VideoSample) -> MetricResult:
        if self.backend is None:
            raise RuntimeError(f"{self.name}: load() was not called")
        if self.opens2v_cases and (skip := opens2v_skip(sample.case)):
            return MetricResult.not_applicable(skip)
        ref = self._ref_feature(sample)
        if ref is None:
            return self._no_ref(sample)
        ref_row, ref_index = ref
        with_face, no_face, rows = self._frame_features(sample)
        extra: dict[str, Any] = {
            "frames_scored": len(with_face),
            "frames_no_face": len(no_face),
            "ref_index": ref_index,
        }
        if rows is None:
            return self._no_face(extra)
        s = self.scores(ref_row, rows)
        if self.skip_zero:
            extra["frames_zero"] = int(np.sum(s <= 0))
            s = s[s > 0]
        value = float(np.mean(s)) if len(s) else 0.0
        return MetricResult(value=value, extra=extra)


@register
class FaceSimArc(_FaceMetric):
    """FaceSim-Arc: max(0, cosine) of ArcFace embeddings (insightface pack, 112 ``norm_crop`` on BGR)."""

    name = "facesim_arc"
    description = "max(0, cos) of ArcFace (buffalo_l w600k_r50) embeddings, ref vs 16 frames"

    feature_key = "arcface"

    def features(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        crops = [self.backend.align(img, [f])[0] for img, f in zip(images, faces, strict=True)]
        return self.backend.embed_crops(crops)


class _CropModelMetric(_FaceMetric):
    """A face metric whose features come from a torch model run on the 224 aligned RGB face crops.

    The crop is cut from the unpadded image (:func:`ipvgkit.faces.base.unpadded_crop`), once per frame
    and backend (``sample.cache[("crop224", backend, i)]``), shared by every such metric. Subclasses
    name the model's file (``model_file``) and say how to load and run the model.
    """

    model_file: ClassVar[ModelFile]

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.model: Any = None

    def model_files(self) -> list[ModelFile]:
        return super().model_files() + [self.model_file]

    def load(self, ctx: MetricContext) -> None:
        path = locate(self.model_file, ctx.models_dir)
        super().load(ctx)
        self.model = self.load_model(path, resolve_device(ctx.device))

    @abstractmethod
    def load_model(self, path: Path, device: str) -> Any:
        """The loaded network."""

    @abstractmethod
    def run_model(self, crops: list[np.ndarray]) -> np.ndarray:
        """One feature row per crop."""

    def features(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        crops = [unpadded_crop(img, f, CROP_SIZE) for img, f in zip(images, faces, strict=True)]
        return self.run_model(crops)

    def frame_rows(self, sample: VideoSample, indices: list[int], faces: list[Face]) -> np.ndarray:
        return self.run_model(frame_crops(sample, self.backend, indices, faces, CROP_SIZE))


@register
class FaceSimCur(_CropModelMetric):
    """FaceSim-Cur: CurricularFace IR-101 on 224 aligned RGB crops resized to 112; max(0, cosine)."""

    name = "facesim_cur"
    description = "max(0, cos) of CurricularFace IR-101 embeddings of 224 aligned crops, ref vs 16 frames"
    model_file = files.CURRICULARFACE
    feature_key = "curricularface"

    def load_model(self, path: Path, device: str) -> Any:
        from ipvgkit.faces.curricular import CurricularFace

        return CurricularFace(path, device)

    def run_model(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.model.embed_crops(crops, self.batch_size)


class _InceptionMetric(_CropModelMetric):
    """InceptionV3 features of the 224 aligned RGB face crop resized to 299, [0,1], no normalisation."""

    model_file = files.INCEPTION_FID
    feature_key = "inception"

    def load_model(self, path: Path, device: str) -> Any:
        from ipvgkit.faces.inception import InceptionFeatures

        return InceptionFeatures(path, device)

    def run_model(self, crops: list[np.ndarray]) -> np.ndarray:
        return self.model.features(crops, self.batch_size)


@register
class FaceFeatDist(_InceptionMetric):
    """The 2025 code's per-frame "FID": squared L2 distance of InceptionV3 features, ref crop vs frame crop."""

    name = "face_feat_dist"
    higher_is_better = False
    zero_if_no_face = False
    description = "squared L2 of InceptionV3 2048-d features, aligned ref face vs frame face (2025 'FID')"

    def scores(self, ref: np.ndarray, frames: np.ndarray) -> np.ndarray:
        d = np.asarray(frames, np.float64) - np.asarray(ref, np.float64)[None]
        return np.sum(d * d, axis=1)


@register
class FaceFID(_InceptionMetric):
    """Real Fréchet distance over a run: reference face crops vs every face crop of the generated frames.

    Per video the value is None (``not_applicable``: a distribution needs the whole run); the features are
    kept in memory and :meth:`finalize` returns ``{"value": fid, "n_real": ..., "n_gen": ...}``. The real
    set holds each distinct reference image once. Needs at least 2 crops on each side.
    """

    name = "fid"
    higher_is_better = False
    description = (
        "Fréchet distance of InceptionV3 features: reference faces vs all generated face crops (run-level)"
    )

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._real: dict[str, np.ndarray] = {}
        self._gen: dict[str, np.ndarray] = {}

    def compute(self, sample: VideoSample) -> MetricResult:
        if self.backend is None:
            raise RuntimeError(f"{self.name}: load() was not called")
        ref = self._ref_feature(sample)
        if ref is None:
            return self._no_ref(sample)
        ref_row, ref_index = ref
        self._real[str(sample.case.ref_images[ref_index])] = ref_row
        with_face, no_face, rows = self._frame_features(sample)
        self._gen[str(sample.video_path)] = rows if rows is not None else np.zeros((0, ref_row.size))
        return MetricResult.not_applicable(
            "fid is a run-level value (see the run summary)",
            frames_scored=len(with_face),
            frames_no_face=len(no_face),
            ref_index=ref_index,
        )

    def finalize(self, results: list[MetricResult]) -> dict:
        real = list(self._real.values())
        gen = [g for g in self._gen.values() if len(g)]
        n_real, n_gen = len(real), int(sum(len(g) for g in gen))
        out: dict[str, Any] = {"n_real": n_real, "n_gen": n_gen, "n_videos": len(self._gen)}
        if n_real < 2 or n_gen < 2:
            out.update(
                value=None,
                error=f"fid needs >= 2 reference faces and >= 2 frame faces (got {n_real}, {n_gen})",
            )
            return out
        out["value"] = fid_from_features(np.stack(real), np.concatenate(gen))
        return out


@register
class FaceSimDlib(_FaceMetric):
    """dlib face similarity: ``max(0, 1 - d/1.2)`` of the Euclidean distance d of dlib's 128-d descriptors.

    d = 0.6 (dlib's same-person threshold) maps to 0.5; identical faces score 1. Works fully offline
    (the weights ship with face-recognition-models). HOG detector (``backend="dlib:cnn"`` for MMOD).
    """

    name = "facesim_dlib"
    backend_name = "dlib"
    process_parallel = True  # dlib only
    description = "max(0, 1 - d/1.2) of dlib 128-d descriptor distance d (0.6 -> 0.5), ref vs 16 frames"

    feature_key = "dlib"

    def features(self, images: list[np.ndarray], faces: list[Face]) -> np.ndarray:
        return np.stack([self.backend.descriptors(img, [f])[0] for img, f in zip(images, faces, strict=True)])

    def scores(self, ref: np.ndarray, frames: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(np.asarray(frames, np.float64) - np.asarray(ref, np.float64)[None], axis=1)
        return dlib_similarity(d)
