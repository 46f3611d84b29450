"""ipvg score compare: statistics against independent computations, and two real runs compared."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.errors import InputError
from ipvgkit.stages.score import ScoreConfig, run_scoring
from ipvgkit.stages.score_compare import RESAMPLES, bootstrap_mean, paired, run_compare, sign_test
from tests.stages.test_score import make_submission, make_testset

METRICS = ["motion_amplitude", "dynamic_degree"]


def binom_two_sided(w: int, l: int) -> float:  # noqa: E741
    """Two-sided exact binomial test at p = 1/2: the probability of outcomes no likelier than (w, l)."""
    n = w + l
    if n == 0:
        return 1.0
    probs = [math.comb(n, k) / 2**n for k in range(n + 1)]
    return min(1.0, sum(p for p in probs if p <= probs[w] * (1 + 1e-12)))


@pytest.mark.parametrize(
    "w,l", [(0, 0), (1, 0), (5, 0), (7, 3), (3, 7), (10, 10), (12, 2), (0, 20), (40, 25)]
)
def test_sign_test_equals_the_binomial_definition(w, l):  # noqa: E741
    assert sign_test(w, l) == pytest.approx(binom_two_sided(w, l), rel=1e-12)


def test_paired_counts_wins_losses_ties_and_respects_direction():
    a = [0.5, 0.2, 0.3, None, 0.9]
    b = [0.4, 0.2, 0.6, 0.1, None]
    assert paired(a, b, True) == {"wins": 1, "losses": 1, "ties": 1, "p_value": 1.0}
    lower = paired([1.0, 1.0, 1.0], [2.0, 3.0, 0.5], higher_is_better=False)
    assert (lower["wins"], lower["losses"]) == (2, 1)


def test_bootstrap_interval_is_seeded_and_matches_the_normal_approximation():
    x = np.random.default_rng(5).normal(3.0, 2.0, size=400).tolist()
    lo, hi = bootstrap_mean(x)
    assert (lo, hi) == bootstrap_mean(x)  # seeded: the same interval every time
    half = 1.959964 * np.std(x, ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(np.mean(x) - half, abs=0.04) and hi == pytest.approx(
        np.mean(x) + half, abs=0.04
    )
    assert bootstrap_mean([2.0, 2.0, 2.0]) == (2.0, 2.0)


@pytest.fixture
def two_runs(tmp_path, tom_hanks):
    ts = make_testset(tmp_path, tom_hanks, n_ids=2, prompts=2)
    still = make_submission(tmp_path / "a", ts, tom_hanks, shift=0)
    moving = make_submission(tmp_path / "b", ts, tom_hanks, shift=6)
    outs = []
    for name, sub in (("still", still), ("moving", moving)):
        out = tmp_path / "scores" / name
        run_scoring(ScoreConfig(submission=sub, cases=ts, out=out, metrics=METRICS))
        outs.append(out)
    return ts, outs


def test_two_real_runs(tmp_path, two_runs):
    _, (still, moving) = two_runs
    rep = run_compare([still, moving], tmp_path / "cmp")
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data == json.loads(json.dumps(rep.data))
    rows = {n: [json.loads(x) for x in (d / "scores.jsonl").read_text().splitlines()] for n, d in
            (("still", still), ("moving", moving))}  # fmt: skip
    ma = {n: [r["metrics"]["motion_amplitude"] for r in rs] for n, rs in rows.items()}
    assert data["means"]["motion_amplitude"]["moving"]["mean"] == pytest.approx(np.mean(ma["moving"]))
    e = data["means"]["motion_amplitude"]["still"]
    assert e["lo"] <= e["mean"] <= e["hi"] and e["n"] == 4
    pair = next(p for p in data["pairs"] if p["metric"] == "motion_amplitude")
    wins = sum(a > b for a, b in zip(ma["still"], ma["moving"], strict=True))
    assert (pair["a"], pair["b"], pair["wins"], pair["losses"]) == ("still", "moving", wins, 4 - wins)
    assert pair["p_value"] == pytest.approx(binom_two_sided(wins, 4 - wins))
    assert data["bootstrap"]["resamples"] == RESAMPLES and data["bootstrap"]["seed"] == 0
    assert len(data["disagreements"]) == 4 and data["disagreements"][0]["by"] == "total"
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert html.count("data:image/jpeg;base64,") >= 2 * 4 * 4  # both runs' frames, side by side
    assert "<script src" not in html


def test_different_test_sets_are_an_error_naming_the_case(tmp_path, two_runs):
    _, (still, moving) = two_runs
    lines = (moving / "scores.jsonl").read_text().splitlines()
    other = tmp_path / "scores" / "fewer"
    shutil.copytree(moving, other)
    (other / "scores.jsonl").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(InputError, match=r"case id002/prompt2\.mp4 is in still .* but not in fewer"):
        run_compare([still, other], tmp_path / "cmp")
    with pytest.raises(InputError, match="not a finished score folder"):
        run_compare([still, tmp_path], tmp_path / "cmp")


@pytest.mark.parametrize("form", [["score", "compare"], ["score-compare"]])
def test_both_cli_forms(tmp_path, two_runs, form):
    _, (still, moving) = two_runs
    out = tmp_path / f"cmp-{len(form)}"
    r = CliRunner().invoke(app, [*form, str(still), str(moving), "-o", str(out), "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runs"][1]["name"] == "moving"
    assert (out / "compare.html").is_file()
    r = CliRunner().invoke(app, [*form, str(still), "-o", str(out)])
    assert r.exit_code == 2 and "at least two" in r.output
    r = CliRunner().invoke(app, [*form, "--help"], env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "bootstrap" in r.output and "score compare" in r.output


def test_score_still_takes_a_folder_named_compare(tmp_path, two_runs, monkeypatch):
    ts, _ = two_runs
    sub = tmp_path / "b" / "submission"
    monkeypatch.chdir(tmp_path / "b")
    os.rename(sub, tmp_path / "b" / "compare")
    r = CliRunner().invoke(app, ["score", "./compare", "--cases", str(ts), "--metrics", ",".join(METRICS),
                                 "-o", str(tmp_path / "o"), "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
