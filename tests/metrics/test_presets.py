"""Run totals of the opens2v and vbench presets against independent computations of their reference rules."""

from __future__ import annotations

import numpy as np
import pytest

from ipvgkit.metrics import MetricResult, get_metric
from ipvgkit.metrics.presets import PRESETS, TOTALS, WEIGHTS, Weight, run_total, weighted_total


def _results(values: list[float | None], **extra) -> list[MetricResult]:
    return [MetricResult(v, dict(extra)) for v in values]


# A 4-video example with values outside the ranges (aesthetic < 4 and > 7, motion > 1) and gaps.
AES = [3.5, 5.0, 7.6, 6.2]
MOTION = [0.3, 1.4, 0.05, None]
FACE = [0.55, 0.7, None, 0.4]  # the third video is not a human case


def opens2v_reference(weights: dict[str, float]) -> float:
    """merge_result.py written out: clip each video, mean over videos with a value, min-max, then the
    weights of the three terms we have, rescaled to sum to 1 (the other terms are absent)."""
    aes = np.mean(np.clip([v for v in AES if v is not None], 4, 7))
    mot = np.mean(np.minimum(np.abs([v for v in MOTION if v is not None]), 1))
    face = np.mean(np.minimum([v for v in FACE if v is not None], 1))
    terms = {"aesthetic": (aes - 4) / 3, "motion_amplitude": mot, "facesim_cur": face}
    return sum(weights[k] * terms[k] for k in terms) / sum(weights[k] for k in terms)


def _opens2v_inputs(preset: str):
    metrics = [get_metric(n) for n in PRESETS[preset]]
    results = {
        "aesthetic": _results(AES),
        "motion_amplitude": _results(MOTION),
        "facesim_cur": _results(FACE),
    }
    return metrics, results


@pytest.mark.parametrize(
    ("preset", "weights"),
    [
        ("opens2v", {"aesthetic": 0.16, "motion_amplitude": 0.02, "facesim_cur": 0.20}),
        ("opens2v-human", {"aesthetic": 0.18, "motion_amplitude": 0.03, "facesim_cur": 0.25}),
        ("opens2v-v1.0", {"aesthetic": 0.12, "motion_amplitude": 0.12, "facesim_cur": 0.20}),
        ("opens2v-v1.0-human", {"aesthetic": 0.15, "motion_amplitude": 0.15, "facesim_cur": 0.25}),
    ],
)
def test_opens2v_total_follows_merge_result(preset, weights):
    metrics, results = _opens2v_inputs(preset)
    total = run_total(preset, metrics, results)
    assert total["value"] == pytest.approx(opens2v_reference(weights), abs=1e-12)
    assert total["partial"] is True and total["rule"] == "clip_videos_then_mean"
    assert sum(total["weights"].values()) == pytest.approx(1.0)
    den = sum(weights.values())
    assert total["weights"] == pytest.approx({k: w / den for k, w in weights.items()})
    assert "merge_result.py" in total["source"]


def test_opens2v_absent_terms_and_full_weights():
    # the full reference tables sum to 1 with the absent terms
    for preset in ("opens2v", "opens2v-human", "opens2v-v1.0", "opens2v-v1.0-human"):
        have = sum(w.weight for w in WEIGHTS[preset].values())
        assert have + sum(TOTALS[preset].absent.values()) == pytest.approx(1.0), preset
    assert list(TOTALS["opens2v"].absent) == [
        "motion_smoothness",
        "gme_score",
        "nexus_score",
        "natural_score",
    ]
    assert "nexus_score" not in TOTALS["opens2v-human"].absent
    assert "motion_smoothness" not in TOTALS["opens2v-v1.0"].absent
    metrics, results = _opens2v_inputs("opens2v")
    assert run_total("opens2v", metrics, results)["absent"] == list(TOTALS["opens2v"].absent)


def test_opens2v_clipping_before_the_mean_moves_the_number():
    metrics, results = _opens2v_inputs("opens2v")
    new = run_total("opens2v", metrics, results)["value"]
    # the old rule: mean over videos first, then clip the normalised mean, equal weights
    means = {k: np.mean([r.value for r in rs if r.value is not None]) for k, rs in results.items()}
    old = weighted_total(means, {k: Weight(1.0, w.lo, w.hi) for k, w in WEIGHTS["opens2v"].items()})
    assert abs(new - old) > 0.02


def test_vbench_total_range_weight_and_no_clipping():
    dd, sc = get_metric("dynamic_degree"), get_metric("subject_consistency")
    # subject consistency 0.381 and dynamic degree 0.875: equal weights on [0, 1] gave 0.628
    results = {
        "dynamic_degree": _results([1.0] * 7 + [0.0]),
        "subject_consistency": _results([0.381, 0.381], frames_compared=10),
    }
    total = run_total("vbench", [dd, sc], results)
    expected = (1.0 * (0.381 - 0.1462) / (1 - 0.1462) + 0.5 * 0.875) / 1.5
    assert total["value"] == pytest.approx(expected, abs=1e-12)
    assert round(total["value"], 3) == 0.475 and round((0.381 + 0.875) / 2, 3) == 0.628
    assert total["partial"] is True and "background consistency" in total["absent"]
    # no clipping: below VBench's minimum the term is negative
    low = {"dynamic_degree": _results([0.0]), "subject_consistency": _results([0.1], frames_compared=5)}
    assert run_total("vbench", [dd, sc], low)["terms"]["subject_consistency"] < 0


def test_vbench_total_uses_the_frame_weighted_run_value():
    dd, sc = get_metric("dynamic_degree"), get_metric("subject_consistency")
    results = {
        "dynamic_degree": _results([1.0, 0.0]),
        "subject_consistency": [
            MetricResult(0.9, {"frames_compared": 3}),
            MetricResult(0.6, {"frames_compared": 15}),
        ],
    }
    sc_run = (0.9 * 3 + 0.6 * 15) / 18
    expected = ((sc_run - 0.1462) / 0.8538 + 0.5 * 0.5) / 1.5
    assert run_total("vbench", [dd, sc], results)["value"] == pytest.approx(expected, abs=1e-12)


def test_custom_and_own_presets_keep_the_strict_total():
    m = [get_metric("motion_amplitude"), get_metric("dynamic_degree")]
    got = run_total(None, m, {"motion_amplitude": _results([0.5]), "dynamic_degree": _results([None])})
    assert got["value"] is None and got["absent"] == ["dynamic_degree"]
    got = run_total(
        None, m, {"motion_amplitude": _results([0.5, 1.5]), "dynamic_degree": _results([1.0, 0.0])}
    )
    assert got["value"] == pytest.approx((1.0 + 0.5) / 2) and got["partial"] is False
