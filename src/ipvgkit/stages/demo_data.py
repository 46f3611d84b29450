"""The demo's small built-in test sets, written from the real face photos that ship in packages.

Track 1 is written in the 2026 Track 1 ``eval.json`` format (SPEC §1 B), Track 2 in the Track 2
format (SPEC §1 C, dict keyed "1".."N", timeline times as fractions of the video).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ipvgkit.assets import available_sample_images
from ipvgkit.errors import MissingDependencyError
from ipvgkit.fsutil import atomic_write_text

TRACK1_PROMPTS = {
    "tom_hanks": "A middle-aged man in a dark suit smiles and nods while talking in a bright office.",
    "astronaut": "A smiling astronaut in an orange flight suit turns her head towards the camera.",
    "t1": "A young person laughs with friends outdoors on a sunny afternoon, the camera slowly pushing in.",
}

TRACK2_CASES = [
    {
        "image": "astronaut",
        "class_label": ["person"],
        "global_prompt": "An astronaut in an orange suit stands in front of a flag.",
        "temporal_captions": [
            {"start": 0.0, "end": 0.5, "description": "she looks at the camera and smiles"},
            {"start": 0.5, "end": 1.0, "description": "she raises her hand and waves"},
        ],
    },
    {
        "image": "tom_hanks",
        "class_label": ["person"],
        "global_prompt": "A man in a suit on a stage.",
        "temporal_captions": [
            {"start": 0.0, "end": 0.4, "description": "he walks in from the left"},
            {"start": 0.4, "end": 0.7, "description": "he stops and turns to the audience"},
            {"start": 0.7, "end": 1.0, "description": "he bows"},
        ],
    },
]


def _images() -> dict[str, Path]:
    found = available_sample_images()
    if not found:
        raise MissingDependencyError(
            "the demo needs the sample face photos shipped by insightface or scikit-image: "
            "pip install 'ipvgkit[insightface]' scikit-image"
        )
    return found


def write_track1(folder: Path) -> Path:
    """``folder/eval.json`` (list of ``{"img", "prompt"}``) and ``folder/images/``; returns the json path."""
    images = _images()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for name, prompt in TRACK1_PROMPTS.items():
        if name not in images:
            continue
        src = images[name]
        dst = folder / "images" / f"{name}{src.suffix}"
        if not dst.exists():
            shutil.copyfile(src, dst)
        entries.append({"img": f"images/{dst.name}", "prompt": prompt})
    return atomic_write_text(folder / "eval.json", json.dumps(entries, indent=2) + "\n")


def write_track2(folder: Path) -> Path:
    """``folder/eval.json`` in the Track 2 format (dict keyed "1".."N"); returns the json path."""
    images = _images()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = {}
    for case in TRACK2_CASES:
        name = case["image"] if case["image"] in images else next(iter(images))
        src = images[name]
        dst = folder / "images" / f"{name}{src.suffix}"
        if not dst.exists():
            shutil.copyfile(src, dst)
        entries[str(len(entries) + 1)] = {
            "img_paths": [f"images/{dst.name}"],
            "class_label": case["class_label"],
            "global_prompt": case["global_prompt"],
            "temporal_captions": case["temporal_captions"],
        }
    return atomic_write_text(folder / "eval.json", json.dumps(entries, indent=2) + "\n")
