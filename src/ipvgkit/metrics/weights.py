"""Presets, per-metric options and the weight table: the ONE place that says what a preset scores.

The weighted total of a video (and of a run) is

    total = sum_i w_i * norm_i(v_i) / sum_i w_i,   norm_i(v) = clip((v - lo_i) / (hi_i - lo_i), 0, 1)

over the metrics of the preset that have a weight (``lo > hi`` means lower-is-better: the range is
reversed). It lies in [0, 1]. A video whose weighted metrics are not all available gets no total.
Only the opens2v ranges come from the SPEC (aesthetics [4, 7], motion [0, 1], face [0, 1]); the other
presets' weights are ipvgkit's own choice (equal weights over their similarity-like metrics) and only
serve to rank videos, e.g. for best-of-N selection.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipvgkit.errors import UsageError


@dataclass(frozen=True)
class Weight:
    """A metric's weight in a preset's total and the range it is min-max normalised over."""

    weight: float
    lo: float
    hi: float

    def normalise(self, value: float) -> float:
        """``value`` clipped and mapped to [0, 1] (1 = best); ``lo > hi`` means lower is better."""
        x = (value - self.lo) / (self.hi - self.lo)
        return min(1.0, max(0.0, x))


PRESETS: dict[str, list[str]] = {
    "consisid": ["facesim_cur", "facesim_arc", "face_feat_dist", "clipscore"],
    "opens2v": ["aesthetic", "motion_amplitude", "facesim_cur"],
    "vbench": ["dynamic_degree", "subject_consistency"],
    "offline": ["facesim_dlib", "motion_amplitude", "dynamic_degree"],
}

PRESET_HELP: dict[str, str] = {
    "consisid": "2025 leaderboard columns: Face-Cur, Face-Arc, face feature distance ('FID'), ClipScore",
    "opens2v": "OpenS2V-Eval style: aesthetics, motion amplitude, FaceSim-Cur (32 frames, zeros excluded)",
    "vbench": "VBench-like: dynamic degree, subject consistency (DINO)",
    "offline": "needs no downloaded weights: dlib face similarity, motion amplitude, dynamic degree",
}

# Constructor options of a metric inside a preset (SPEC §4: opens2v's FaceSim-Cur reads 32 frames and
# leaves out frames whose score is zero).
PRESET_OPTIONS: dict[str, dict[str, dict]] = {
    "opens2v": {"facesim_cur": {"n_frames": 32, "skip_zero": True}},
    # the 2025 code's 0.0 for all three face metrics of a video without a face (flagged, counted, warned)
    "consisid": {m: {"no_face_quirk": True} for m in ("facesim_cur", "facesim_arc", "face_feat_dist")},
}

# Default normalisation of every metric (used by ``--metrics`` lists and the report's colouring).
DEFAULT_WEIGHTS: dict[str, Weight] = {
    "facesim_cur": Weight(1.0, 0.0, 1.0),
    "facesim_arc": Weight(1.0, 0.0, 1.0),
    "facesim_dlib": Weight(1.0, 0.0, 1.0),
    "face_feat_dist": Weight(0.0, 250.0, 150.0),
    "clipscore": Weight(1.0, 0.0, 40.0),
    "aesthetic": Weight(1.0, 4.0, 7.0),
    "motion_amplitude": Weight(1.0, 0.0, 1.0),
    "dynamic_degree": Weight(1.0, 0.0, 1.0),
    "subject_consistency": Weight(1.0, 0.0, 1.0),
    "timeline_alignment": Weight(1.0, -0.1, 0.1),
    "fid": Weight(0.0, 300.0, 0.0),
}

WEIGHTS: dict[str, dict[str, Weight]] = {
    "consisid": {
        "facesim_cur": Weight(1.0, 0.0, 1.0),
        "facesim_arc": Weight(1.0, 0.0, 1.0),
        "clipscore": Weight(1.0, 0.0, 40.0),
    },
    "opens2v": {
        "aesthetic": Weight(1.0, 4.0, 7.0),
        "motion_amplitude": Weight(1.0, 0.0, 1.0),
        "facesim_cur": Weight(1.0, 0.0, 1.0),
    },
    "vbench": {
        "dynamic_degree": Weight(1.0, 0.0, 1.0),
        "subject_consistency": Weight(1.0, 0.0, 1.0),
    },
    "offline": {
        "facesim_dlib": Weight(1.0, 0.0, 1.0),
        "motion_amplitude": Weight(1.0, 0.0, 1.0),
        "dynamic_degree": Weight(1.0, 0.0, 1.0),
    },
}


def preset_metrics(preset: str) -> list[str]:
    """The metric names of ``preset`` (UsageError listing the presets on an unknown one)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    return list(PRESETS[preset])


def weights_for(preset: str | None, metrics: list[str]) -> dict[str, Weight]:
    """The weight table used for a total: the preset's, else the default entry of each metric (weight 1)."""
    if preset is not None:
        if preset not in WEIGHTS:
            raise UsageError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        return {m: w for m, w in WEIGHTS[preset].items() if m in metrics}
    table = {}
    for m in metrics:
        w = DEFAULT_WEIGHTS.get(m)
        if w is not None and w.weight > 0:
            table[m] = w
    return table


def weighted_total(values: dict[str, float | None], table: dict[str, Weight]) -> float | None:
    """The weighted, normalised total of ``values`` (None when a weighted metric has no value)."""
    if not table:
        return None
    num = den = 0.0
    for name, w in table.items():
        if w.weight <= 0:
            continue
        v = values.get(name)
        if v is None:
            return None
        num += w.weight * w.normalise(float(v))
        den += w.weight
    return num / den if den > 0 else None
