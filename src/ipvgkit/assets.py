"""Real sample images that ship inside installed packages (used by ``ipvg demo`` and the tests).

insightface ships ``data/images/t1.jpg`` (a group photo) and ``Tom_Hanks_54745.png``; scikit-image
ships ``data/astronaut.png`` (Eileen Collins). Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ipvgkit.errors import MissingDependencyError

_SOURCES = {
    "tom_hanks": ("insightface", "data/images/Tom_Hanks_54745.png"),
    "t1": ("insightface", "data/images/t1.jpg"),
    "astronaut": ("skimage", "data/astronaut.png"),
}


def sample_image(name: str) -> Path:
    """Path of one named sample image; raises naming the package to install if it is absent."""
    if name not in _SOURCES:
        raise KeyError(f"unknown sample image {name!r} (known: {', '.join(_SOURCES)})")
    package, rel = _SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        pip_name = {"insightface": "insightface", "skimage": "scikit-image"}[package]
        raise MissingDependencyError(f"sample image {name!r} ships with {pip_name}: pip install {pip_name}")
    path = Path(spec.origin).parent / rel
    if not path.is_file():
        raise MissingDependencyError(f"sample image {name!r} not found at {path}")
    return path


def available_sample_images() -> dict[str, Path]:
    """Every sample image that is installed, by name."""
    found = {}
    for name in _SOURCES:
        try:
            found[name] = sample_image(name)
        except MissingDependencyError:
            continue
    return found
