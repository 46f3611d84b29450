"""Presets, per-metric options and the weight tables: the ONE place that says what a preset scores.

A video's total (``weighted_total``) is

    total = sum_i w_i * norm_i(v_i) / sum_i w_i,   norm_i(v) = (v - lo_i) / (hi_i - lo_i)

over the metrics of the preset that have a weight, ``norm`` clipped to [0, 1] unless the table says
otherwise (``lo > hi`` means lower-is-better). A video whose weighted metrics are not all available gets
no total. The run's total (:func:`run_total`) follows the preset's :class:`TotalSpec`:

- ``normalise_run_values`` (consisid, vbench, offline, ``--metrics``): each metric's run value (its own
  aggregation: mean over videos, or VBench's frame weighting) normalised, then weighted;
- ``clip_videos_then_mean`` (opens2v, as OpenS2V-Eval's ``merge_result.py``): each video's value clipped
  to the metric's range first, averaged over the videos that have it, min-max normalised, weighted.

Terms of the reference total that ipvgkit does not compute (``TotalSpec.absent``: OpenS2V's GmeScore,
NexusScore, NaturalScore, motion smoothness; VBench's other dimensions) make it a *partial* total: the
weights we have are rescaled to sum to 1, and the summary lists the absent terms.
Sources: OpenS2V-Eval ``eval/merge_result.py`` (v1.1) and ``eval/v1.0_backup/merge_result.py`` (v1.0) of
PKU-YuanGroup/OpenS2V-Nexus; VBench ``scripts/constant.py`` (``NORMALIZE_DIC``, ``DIM_WEIGHT``). The
consisid and offline weights are ipvgkit's own (equal weights) and only rank videos (best-of-N).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ipvgkit.errors import UsageError

if TYPE_CHECKING:
    from ipvgkit.metrics.base import Metric, MetricResult


@dataclass(frozen=True)
class Weight:
    """A metric's weight in a preset's total and the range it is min-max normalised over.

    ``clip``: the normalised value is clipped to [0, 1] (VBench's total does not clip: ``clip=False``).
    """

    weight: float
    lo: float
    hi: float
    clip: bool = True

    def normalise(self, value: float) -> float:
        """``value`` mapped to [0, 1] (1 = best; clipped unless ``clip`` is False); ``lo > hi``: lower is better."""
        x = (value - self.lo) / (self.hi - self.lo)
        return min(1.0, max(0.0, x)) if self.clip else x

    def clip_value(self, value: float) -> float:
        """``value`` clipped into the range (OpenS2V-Eval clips each video's value before averaging)."""
        lo, hi = sorted((self.lo, self.hi))
        return min(hi, max(lo, value))


TotalRule = Literal["normalise_run_values", "clip_videos_then_mean"]
TOTAL_RULES: tuple[str, ...] = ("normalise_run_values", "clip_videos_then_mean")


@dataclass(frozen=True)
class TotalSpec:
    """How a preset's run total is made, where the numbers come from, and the terms we do not compute."""

    rule: TotalRule
    source: str
    absent: dict[str, float] = field(default_factory=dict)  # reference term -> its weight there


# OpenS2V-Eval ranges (merge_result.py): aesthetics [4, 7], motion [0, 1], FaceSim-Cur [0, 1].
_AES, _MOTION, _FACE = (4.0, 7.0), (0.0, 1.0), (0.0, 1.0)
_OPENS2V_ABSENT = ("motion_smoothness", "gme_score", "nexus_score", "natural_score")


def _opens2v(aes: float, smooth: float, motion: float, face: float, gme: float, nexus: float, nat: float):
    weights = {
        "aesthetic": Weight(aes, *_AES),
        "motion_amplitude": Weight(motion, *_MOTION),
        "facesim_cur": Weight(face, *_FACE),
    }
    absent = dict(zip(_OPENS2V_ABSENT, (smooth, gme, nexus, nat), strict=True))
    return weights, {k: v for k, v in absent.items() if v > 0}


# name -> (weights of the terms we compute, absent terms, source)
OPENS2V_TABLES: dict[str, tuple[dict[str, Weight], dict[str, float], str]] = {
    "opens2v": (
        *_opens2v(0.16, 0.06, 0.02, 0.20, 0.12, 0.20, 0.24),
        "OpenS2V-Eval v1.1 Open-Domain (and Single-Domain), eval/merge_result.py",
    ),
    "opens2v-human": (
        *_opens2v(0.18, 0.09, 0.03, 0.25, 0.15, 0.0, 0.30),
        "OpenS2V-Eval v1.1 Human-Domain, eval/merge_result.py",
    ),
    "opens2v-v1.0": (
        *_opens2v(0.12, 0.0, 0.12, 0.20, 0.12, 0.20, 0.24),
        "OpenS2V-Eval v1.0 Open-Domain, eval/v1.0_backup/merge_result.py",
    ),
    "opens2v-v1.0-human": (
        *_opens2v(0.15, 0.0, 0.15, 0.25, 0.15, 0.0, 0.30),
        "OpenS2V-Eval v1.0 Human-Domain, eval/v1.0_backup/merge_result.py",
    ),
}

# VBench dimensions other than the two we compute (scripts/constant.py DIM_WEIGHT).
_VBENCH_ABSENT = {
    "background consistency": 1.0,
    "temporal flickering": 1.0,
    "motion smoothness": 1.0,
    "aesthetic quality": 1.0,
    "imaging quality": 1.0,
    "object class": 1.0,
    "multiple objects": 1.0,
    "human action": 1.0,
    "color": 1.0,
    "spatial relationship": 1.0,
    "scene": 1.0,
    "appearance style": 1.0,
    "temporal style": 1.0,
    "overall consistency": 1.0,
}

PRESETS: dict[str, list[str]] = {
    "consisid": ["facesim_cur", "facesim_arc", "face_feat_dist", "clipscore"],
    **{name: ["aesthetic", "motion_amplitude", "facesim_cur"] for name in OPENS2V_TABLES},
    "vbench": ["dynamic_degree", "subject_consistency"],
    "offline": ["facesim_dlib", "motion_amplitude", "dynamic_degree"],
}

PRESET_HELP: dict[str, str] = {
    "consisid": "2025 leaderboard columns: Face-Cur, Face-Arc, face feature distance ('FID'), ClipScore",
    "opens2v": "OpenS2V-Eval v1.1 Open-Domain: aesthetics, motion amplitude, FaceSim-Cur (partial total)",
    "opens2v-human": "OpenS2V-Eval v1.1 Human-Domain weights (same metrics as opens2v)",
    "opens2v-v1.0": "OpenS2V-Eval v1.0 Open-Domain weights (same metrics as opens2v)",
    "opens2v-v1.0-human": "OpenS2V-Eval v1.0 Human-Domain weights (same metrics as opens2v)",
    "vbench": "VBench: dynamic degree (RAFT-things or a recorded OpenCV substitute), subject consistency",
    "offline": "needs no downloaded weights: dlib face similarity, motion amplitude, dynamic degree",
}

# Constructor options of a metric inside a preset (SPEC §4: OpenS2V's FaceSim-Cur reads 32 frames,
# leaves out frames whose score is zero, scores human cases only and picks the reference image by path:
# ipvgkit.metrics.opens2v).
PRESET_OPTIONS: dict[str, dict[str, dict]] = {
    name: {"facesim_cur": {"n_frames": 32, "skip_zero": True, "opens2v_cases": True}}
    for name in OPENS2V_TABLES
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
    **{name: table[0] for name, table in OPENS2V_TABLES.items()},
    "vbench": {  # scripts/constant.py: NORMALIZE_DIC subject consistency [0.1462, 1], DIM_WEIGHT dynamic 0.5
        "dynamic_degree": Weight(0.5, 0.0, 1.0, clip=False),
        "subject_consistency": Weight(1.0, 0.1462, 1.0, clip=False),
    },
    "offline": {
        "facesim_dlib": Weight(1.0, 0.0, 1.0),
        "motion_amplitude": Weight(1.0, 0.0, 1.0),
        "dynamic_degree": Weight(1.0, 0.0, 1.0),
    },
}

TOTALS: dict[str, TotalSpec] = {
    "consisid": TotalSpec("normalise_run_values", "ipvgkit's own equal weights (no official total)"),
    **{
        name: TotalSpec("clip_videos_then_mean", source, absent)
        for name, (_, absent, source) in OPENS2V_TABLES.items()
    },
    "vbench": TotalSpec(
        "normalise_run_values",
        "VBench scripts/constant.py (NORMALIZE_DIC, DIM_WEIGHT); quality-score style weighted mean",
        _VBENCH_ABSENT,
    ),
    "offline": TotalSpec("normalise_run_values", "ipvgkit's own equal weights (no official total)"),
}
CUSTOM_TOTAL = TotalSpec("normalise_run_values", "each metric's default entry (--metrics list)")


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


def _term_values(
    spec: TotalSpec, table: dict[str, Weight], metrics: list[Metric], results: dict[str, list[MetricResult]]
) -> dict[str, float | None]:
    """Each weighted metric's run value before normalisation, by the spec's rule."""
    by_name = {m.name: m for m in metrics}
    out: dict[str, float | None] = {}
    for name, w in table.items():
        rs = results.get(name, [])
        if spec.rule == "clip_videos_then_mean":
            vals = [w.clip_value(float(r.value)) for r in rs if r.value is not None]
            out[name] = sum(vals) / len(vals) if vals else None
        else:
            m = by_name.get(name)
            out[name] = m.run_value(rs) if m is not None else None
    return out


def run_total(preset: str | None, metrics: list[Metric], results: dict[str, list[MetricResult]]) -> dict:
    """The run's total by the preset's :class:`TotalSpec` (``results``: per metric, every video's result).

    Returns ``{"value", "rule", "source", "partial", "weights" (the rescaled weights used), "absent"
    (reference terms not computed, and weighted metrics no video has a value for), "terms" (normalised
    run value of each term)}``. A computed metric without any value makes the consisid/offline/custom
    total None (as a video's total); under the opens2v and vbench rules it becomes an absent term.
    """
    spec = TOTALS.get(preset or "", CUSTOM_TOTAL) if preset else CUSTOM_TOTAL
    table = {k: w for k, w in weights_for(preset, [m.name for m in metrics]).items() if w.weight > 0}
    raw = _term_values(spec, table, metrics, results)
    official = spec.rule == "clip_videos_then_mean" or bool(spec.absent)
    missing = [k for k, v in raw.items() if v is None]
    terms = {k: table[k].normalise(v) for k, v in raw.items() if v is not None}
    absent = list(spec.absent) + missing
    den = sum(table[k].weight for k in terms)
    value = sum(table[k].weight * t for k, t in terms.items()) / den if den > 0 else None
    if missing and not official:
        value = None
    return {
        "value": value,
        "rule": spec.rule,
        "source": spec.source,
        "partial": bool(absent),
        "weights": {k: table[k].weight / den for k in terms} if den > 0 else {},
        "absent": absent,
        "terms": terms,
    }
