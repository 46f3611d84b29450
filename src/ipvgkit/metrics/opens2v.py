"""OpenS2V-Eval's case rules for FaceSim-Cur (``eval/get_facesim.py`` of PKU-YuanGroup/OpenS2V-Nexus).

- Only human cases are scored: the video's file name contains ``singlehuman``, ``singleface``,
  ``faceobj`` or ``humanobj`` (the other categories have no FaceSim value and do not enter its average).
- The reference image is the first of the case's images whose path contains ``/man/``, ``/woman/``,
  ``/crop_woman/`` or ``/crop_man/`` (not the first image with a face); a human case without one is
  skipped by the reference (here: not applicable, with the reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipvgkit.data.cases import Case

HUMAN_KEYWORDS = ("singlehuman", "singleface", "faceobj", "humanobj")
REFERENCE_DIRS = ("/man/", "/woman/", "/crop_woman/", "/crop_man/")


def is_human_case(case: Case) -> bool:
    """True when OpenS2V-Eval scores FaceSim for this case (keyword in the video's file name)."""
    name = Path(case.output_name).name
    return any(k in name for k in HUMAN_KEYWORDS)


def reference_index(case: Case) -> int | None:
    """Index of the reference image OpenS2V-Eval compares faces with, or None when no path qualifies."""
    for i, p in enumerate(case.ref_images):
        path = str(p).replace("\\", "/")
        if any(d in path for d in REFERENCE_DIRS):
            return i
    return None
