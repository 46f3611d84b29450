"""Environment checks behind ``ipvg doctor``."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ipvgkit.paths import hf_cache_dir
from ipvgkit.paths import models_dir as resolve_models_dir
from ipvgkit.progress import Progress, ensure


@dataclass
class Check:
    name: str
    ok: bool
    details: str
    fix: str = ""
    required: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _package(name: str, dist: str, module: str, fix: str, required: bool) -> Check:
    ver = _version(dist)
    if ver is None or importlib.util.find_spec(module) is None:
        return Check(name, False, "not installed", fix, required)
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - report any import failure, e.g. a missing libGL
        return Check(
            name, False, f"{ver} installed but import fails: {str(e).splitlines()[0]}", fix, required
        )
    return Check(name, True, ver, fix, required)


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, f"{platform.python_version()} ({sys.executable})", "use Python >= 3.11")


def check_torch() -> Check:
    c = _package("torch", "torch", "torch", "pip install torch", True)
    if not c.ok:
        return c
    import torch

    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        c.details = f"{torch.__version__}, CUDA {torch.version.cuda}, {len(gpus)} GPU(s): {', '.join(gpus)}"
    else:
        c.details = f"{torch.__version__}, no CUDA GPU (generation runs on the CPU: fine for tiny-wan only)"
    return c


def check_ffmpeg() -> Check:
    from ipvgkit.errors import MissingDependencyError
    from ipvgkit.media.ffmpeg_bin import ffmpeg_info

    try:
        info = ffmpeg_info()
    except MissingDependencyError as e:
        return Check(
            "ffmpeg + libx264", False, str(e), "pip install imageio-ffmpeg (or apt-get install ffmpeg)"
        )
    return Check("ffmpeg + libx264", True, f"{info.version} ({info.source}: {info.path})")


def check_models_dir(override: Path | None) -> Check:
    d = resolve_models_dir(override)
    if not d.is_dir():
        return Check(
            "models directory",
            False,
            f"{d} does not exist",
            "create it and put weights there (see `ipvg models`), or pass --models-dir / set IPVG_MODELS",
            required=False,
        )
    entries = sorted(p.name for p in d.iterdir())
    shown = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
    return Check("models directory", True, f"{d}: {shown or 'empty'}", required=False)


def _planned(models_dir: Path | None) -> list[tuple[str, Callable[[], Check]]]:
    """Every check, named, not yet run (some import heavy packages: torch takes seconds)."""
    return [
        ("python", check_python),
        ("numpy", lambda: _package("numpy", "numpy", "numpy", "pip install numpy", True)),
        ("ffmpeg", check_ffmpeg),
        ("PyAV", lambda: _package("PyAV", "av", "av", "pip install av", True)),
        ("OpenCV", lambda: _package("OpenCV", "opencv-python-headless", "cv2", "pip install opencv-python-headless", True)),
        ("torch", check_torch),
        ("diffusers", lambda: _package("diffusers", "diffusers", "diffusers", "pip install diffusers", True)),
        ("transformers", lambda: _package("transformers", "transformers", "transformers", "pip install transformers", True)),
        ("peft", lambda: _package("peft", "peft", "peft", "pip install peft", False)),
        ("accelerate", lambda: _package("accelerate", "accelerate", "accelerate", "pip install accelerate", False)),
        ("insightface", lambda: _package("insightface + onnxruntime", "insightface", "insightface", "pip install 'ipvgkit[insightface]'", False)),
        ("onnxruntime", lambda: _package("onnxruntime", "onnxruntime", "onnxruntime", "pip install 'ipvgkit[insightface]'", False)),
        ("dlib", lambda: _package("dlib", "dlib-bin", "dlib", "pip install 'ipvgkit[dlib]'", False)),
        ("face-recognition-models", lambda: _package("face-recognition-models", "face-recognition-models", "face_recognition_models", "pip install 'ipvgkit[dlib]'", False)),
        ("ray", lambda: _package("ray", "ray", "ray", "pip install 'ipvgkit[ray]'", False)),
        ("models directory", lambda: check_models_dir(models_dir)),
        ("Hugging Face cache", lambda: Check("Hugging Face cache", hf_cache_dir().is_dir(), str(hf_cache_dir()), "created on first hub download", False)),
    ]  # fmt: skip


def run_checks(models_dir: Path | None = None, progress: Progress | None = None) -> list[Check]:
    """Run every check in order, one ``progress`` item each (the current one in its status)."""
    progress = ensure(progress)
    planned = _planned(models_dir)
    progress.phase("checking", len(planned))
    checks = []
    for name, run in planned:
        progress.status(f"checking {name}")
        checks.append(run())
        progress.advance()
    # face_recognition_models imports pkg_resources at import time; we only need its files.
    for c in checks:
        if c.name == "face-recognition-models" and not c.ok and _version("face-recognition-models"):
            spec = importlib.util.find_spec("face_recognition_models")
            if spec and spec.origin and (Path(spec.origin).parent / "models").is_dir():
                c.ok, c.details = True, f"{_version('face-recognition-models')} (model files found)"
    return checks
