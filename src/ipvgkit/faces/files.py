"""The weight files of the face backends and face metrics, registered in ``ipvgkit.weights.REGISTRY``.

Importing this module is cheap (no torch, no onnxruntime); it only declares where each file is looked
for and where to get it. See docs/models-files.md.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ipvgkit.weights import ModelFile, register_file

INSIGHTFACE_RELEASES = "https://github.com/deepinsight/insightface/releases/download/v0.7"
CONSISID_HF = "BestWishYsh/ConsisID-preview"


def _face_recognition_models_dir() -> str | None:
    """The ``models/`` folder of the installed face-recognition-models package (its import needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        return None
    return str(Path(spec.origin).parent / "models")


BUFFALO_L = register_file(
    ModelFile(
        name="buffalo_l",
        relpath="insightface/buffalo_l",
        source=(
            f"{INSIGHTFACE_RELEASES}/buffalo_l.zip: unzip so that <models_dir>/insightface/buffalo_l/ "
            "holds det_10g.onnx and w600k_r50.onnx (insightface's non-commercial research licence); "
            "ConsisID's checkpoint folder has it as face_encoder/models/buffalo_l"
        ),
        description="insightface pack: SCRFD-10G detector (det_10g.onnx) + ArcFace R50 (w600k_r50.onnx)",
        used_by=("facesim_arc", "facesim_cur", "face_feat_dist", "fid", "insightface:buffalo_l"),
        extra_paths=("~/.insightface/models/buffalo_l",),
        alt_relpaths=("face_encoder/models/buffalo_l",),  # ConsisID's checkpoint folder (its eval's pack)
        hf_repo=CONSISID_HF,
        hf_path="face_encoder/models/buffalo_l",
        hf_patterns=("det_10g.onnx", "w600k_r50.onnx"),  # only the detector and recogniser are used
    )
)

ANTELOPEV2 = register_file(
    ModelFile(
        name="antelopev2",
        relpath="insightface/antelopev2",
        source=(
            f"{INSIGHTFACE_RELEASES}/antelopev2.zip (unzip into <models_dir>/insightface/antelopev2/: "
            f"scrfd_10g_bnkps.onnx, glintr100.onnx); ConsisID also ships it in the hub repo {CONSISID_HF} "
            "under face_encoder/models/antelopev2"
        ),
        hf_repo=CONSISID_HF,
        hf_path="face_encoder/models/antelopev2",
        alt_relpaths=("face_encoder/models/antelopev2",),
        description="insightface pack: SCRFD-10G detector + ArcFace R100 (Glint360K); used by ConsisID",
        used_by=("insightface:antelopev2",),
        extra_paths=("~/.insightface/models/antelopev2",),
    )
)

CURRICULARFACE = register_file(
    ModelFile(
        name="curricularface-ir101",
        relpath="curricularface/glint360k_curricular_face_r101_backbone.bin",
        source=(
            f"hub repo {CONSISID_HF}, file face_encoder/glint360k_curricular_face_r101_backbone.bin "
            "(the CurricularFace IR-101 backbone used by ConsisID's eval; a state dict) - or any "
            "TorchScript export of an IR-101 taking (N,3,112,112) in [-1,1] and returning (N,512)"
        ),
        hf_repo=CONSISID_HF,
        hf_path="face_encoder/glint360k_curricular_face_r101_backbone.bin",
        alt_relpaths=("face_encoder/glint360k_curricular_face_r101_backbone.bin",),
        description="CurricularFace IR-101 face recogniser (512-d), state dict or TorchScript",
        used_by=("facesim_cur",),
    )
)

INCEPTION_FID = register_file(
    ModelFile(
        name="inception-v3-fid",
        relpath="inception/inception_v3_fid.pt",
        source=(
            "a TorchScript export of torchvision's inception_v3(weights=IMAGENET1K_V1) with fc=Identity "
            "(2048-d pooled features, input (N,3,299,299) in [0,1]): on a machine where torchvision imports "
            "run `ipvg models export-inception --models-dir <models_dir>` (a torchvision state dict "
            "inception_v3_google-0cc3c7bd.pth at this path loads too where torchvision imports). "
            "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth from "
            "https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights is a different network "
            "and does not reproduce the 2025 numbers.)"
        ),
        description="InceptionV3 2048-d feature extractor (TorchScript or torchvision state dict)",
        used_by=("face_feat_dist", "fid"),
    )
)

_FRM = _face_recognition_models_dir()
_FRM_SOURCE = (
    "ships with the PyPI package face-recognition-models (pip install face-recognition-models dlib-bin)"
)


def _dlib_file(name: str, filename: str, description: str, used_by: tuple[str, ...]) -> ModelFile:
    return register_file(
        ModelFile(
            name=name,
            relpath=f"dlib/{filename}",
            source=_FRM_SOURCE,
            description=description,
            used_by=used_by,
            extra_paths=(f"{_FRM}/{filename}",) if _FRM else (),
        )
    )


DLIB_SHAPE5 = _dlib_file(
    "dlib-shape-predictor-5",
    "shape_predictor_5_face_landmarks.dat",
    "dlib 5-point face landmark predictor",
    ("facesim_dlib", "dlib"),
)
DLIB_RESNET = _dlib_file(
    "dlib-face-recognition-resnet",
    "dlib_face_recognition_resnet_model_v1.dat",
    "dlib 128-d ResNet face embedding",
    ("facesim_dlib", "dlib"),
)
DLIB_MMOD = _dlib_file(
    "dlib-mmod-face-detector",
    "mmod_human_face_detector.dat",
    'dlib CNN (MMOD) face detector (the dlib backend with detector="cnn")',
    ("dlib:cnn",),
)

PACKS = {"buffalo_l": BUFFALO_L, "antelopev2": ANTELOPEV2}
