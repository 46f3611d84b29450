"""OpenS2V-Eval's case rules for FaceSim-Cur (``eval/get_facesim.py`` of PKU-YuanGroup/OpenS2V-Nexus).

- Only human cases are scored: the video's file name contains ``singlehuman``, ``singleface``,
  ``faceobj`` or ``humanobj`` (the other categories have no FaceSim value and do not enter its average).
- The reference image is the first of the case's images whose path contains ``/man/``, ``/woman/``,
  ``/crop_woman/`` or ``/crop_man/`` (not the first image with a face); a human case without one is
  skipped by the reference (here: not applicable, with the reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipvgkit.data.cases import Case
    from ipvgkit.faces.base import Face
    from ipvgkit.metrics.base import VideoSample

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


def opens2v_skip(case: Case) -> str | None:
    """Why OpenS2V-Eval gives this case no FaceSim value, or None."""
    if not is_human_case(case):
        return f"not a human case (OpenS2V-Eval scores faces only for {', '.join(HUMAN_KEYWORDS)} videos)"
    if reference_index(case) is None:
        return f"no reference image under {', '.join(REFERENCE_DIRS)} (OpenS2V-Eval skips the case)"
    return None


def opens2v_ref_face(sample: VideoSample, backend: Any) -> tuple[int, Face] | None:
    """(index, face) of OpenS2V-Eval's reference image of the case, or None when it has no face."""
    from ipvgkit.metrics.samples import ref_faces

    i = reference_index(sample.case)
    face = ref_faces(sample, backend)[i] if i is not None else None
    return (i, face) if face is not None else None
