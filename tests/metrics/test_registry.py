"""The registry, presets and the weight table."""

from __future__ import annotations

import pytest

from ipvgkit.errors import UsageError
from ipvgkit.metrics import METRICS, Metric, MetricResult, get_metric, known_metrics, register
from ipvgkit.metrics.presets import (
    DEFAULT_WEIGHTS,
    PRESET_OPTIONS,
    PRESETS,
    WEIGHTS,
    Weight,
    preset_metrics,
    weighted_total,
    weights_for,
)
from ipvgkit.weights import REGISTRY

NON_FACE = [
    "clipscore",
    "aesthetic",
    "motion_amplitude",
    "dynamic_degree",
    "subject_consistency",
    "timeline_alignment",
]


def test_all_metrics_are_registered():
    names = known_metrics()
    for n in NON_FACE:
        assert n in names
    for preset, metrics in PRESETS.items():
        for m in metrics:
            assert m in names, (preset, m)


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown metric 'nope'.*clipscore"):
        get_metric("nope")
    with pytest.raises(UsageError, match="unknown preset"):
        preset_metrics("nope")


def test_bad_constructor_option_is_a_usage_error():
    with pytest.raises(UsageError, match="clipscore"):
        get_metric("clipscore", no_such_option=1)


def test_presets_match_the_spec():
    assert PRESETS["consisid"] == ["facesim_cur", "facesim_arc", "face_feat_dist", "clipscore"]
    assert PRESETS["opens2v"] == ["aesthetic", "motion_amplitude", "facesim_cur"]
    assert PRESETS["vbench"] == ["dynamic_degree", "subject_consistency"]
    assert PRESETS["offline"] == ["facesim_dlib", "motion_amplitude", "dynamic_degree"]
    assert WEIGHTS["opens2v"]["aesthetic"] == Weight(0.16, 4.0, 7.0)  # OpenS2V-Eval v1.1 Open-Domain
    assert PRESET_OPTIONS["opens2v"]["facesim_cur"] == {
        "n_frames": 32,
        "skip_zero": True,
        "opens2v_cases": True,
    }
    m = get_metric("facesim_cur", **PRESET_OPTIONS["opens2v"]["facesim_cur"])
    assert len(m.frame_indices(81)) == 32


def test_weights_only_name_preset_metrics():
    for preset, table in WEIGHTS.items():
        assert set(table) <= set(PRESETS[preset])
    for name in known_metrics():
        assert name in DEFAULT_WEIGHTS, name


def test_offline_preset_needs_no_downloaded_weights(tmp_path, monkeypatch):
    from ipvgkit.weights import find

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    for name in PRESETS["offline"]:
        for mf in get_metric(name).model_files():
            path, searched = find(mf, tmp_path / "empty-models-dir")
            assert path is not None, (mf.relpath, searched)  # shipped with an installed package


def test_model_files_are_registered():
    for name in NON_FACE:
        for mf in get_metric(name).model_files():
            assert REGISTRY[mf.name] == mf or name in REGISTRY[mf.name].used_by


def test_weighted_total():
    table = {"a": Weight(1.0, 4.0, 7.0), "b": Weight(3.0, 0.0, 1.0), "c": Weight(1.0, 10.0, 0.0)}
    # a: (5.5-4)/3 = 0.5; b clipped to 1; c lower-is-better: (2.5-10)/(0-10) = 0.75
    assert weighted_total({"a": 5.5, "b": 2.0, "c": 2.5}, table) == pytest.approx((0.5 + 3 * 1.0 + 0.75) / 5)
    assert weighted_total({"a": 5.5, "b": None, "c": 1.0}, table) is None
    assert weighted_total({"a": 1.0}, {}) is None
    assert weights_for(None, ["clipscore", "face_feat_dist"]) == {"clipscore": DEFAULT_WEIGHTS["clipscore"]}
    assert set(weights_for("consisid", PRESETS["consisid"])) == {"facesim_cur", "facesim_arc", "clipscore"}


def test_register_rejects_a_second_class_with_the_same_name():
    class Dup(Metric):
        name = "motion_amplitude"
        family = "x"

        def frame_indices(self, n_frames):
            return []

        def compute(self, sample):
            return MetricResult(1.0)

    with pytest.raises(TypeError, match="registered twice"):
        register(Dup)
    assert METRICS["motion_amplitude"].__name__ == "MotionAmplitude"


def test_aesthetic_accepts_the_opens2v_file_name(tmp_path):
    """OpenS2V-Eval ships the LAION MLP as OpenS2V-Weight/aesthetic-model.pth: found under either name."""
    from ipvgkit.metrics import MetricContext
    from ipvgkit.metrics.clip import AESTHETIC_MLP
    from ipvgkit.stages.score import check_weights
    from ipvgkit.weights import find
    from tests.metrics.tiny_models import make_tiny_aesthetic, make_tiny_clip

    make_tiny_clip(tmp_path / "clip-vit-large-patch14", seed=1)
    make_tiny_aesthetic(tmp_path / "aesthetic-model.pth")
    m = get_metric("aesthetic")
    check_weights([m], tmp_path)  # no MissingWeightsError
    m.load(MetricContext(models_dir=tmp_path))
    assert m.layers is not None
    path, searched = find(AESTHETIC_MLP, tmp_path)
    assert path == tmp_path / "aesthetic-model.pth"
    assert searched[0].endswith("sac+logos+ava1-l14-linearMSE.pth")  # LAION's name is looked for first
    make_tiny_aesthetic(tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    assert find(AESTHETIC_MLP, tmp_path)[0].name == "sac+logos+ava1-l14-linearMSE.pth"
