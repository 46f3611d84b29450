"""`ipvg prepare` through typer's CliRunner: exit codes, the summary by reason, --list-missing, stats."""

import json

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from tests.data.sources.builders import reactid_tree, vip200k_dataset

runner = CliRunner()
SMALL = ["--set", "sample.buckets=[96x128]", "--face-backend", "none", "-q"]


@pytest.fixture(scope="module")
def vip(tmp_path_factory):
    return vip200k_dataset(tmp_path_factory.mktemp("cli_vip"))


def test_vip200k_exits_1_with_a_summary_by_reason_then_resumes(vip, tmp_path):
    ann, videos = vip
    args = [
        "prepare",
        "vip200k",
        "-a",
        str(ann),
        "--videos",
        str(videos),
        "--out",
        str(tmp_path / "p"),
        *SMALL,
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "3 samples in the manifest (5 prepared now, 0 reused), 3 rejected" in r.stdout
    assert "3 item(s) rejected" in r.stderr
    for line in ("corrupt-video: 1", "missing-video: 1", "too-short: 1"):
        assert line in r.stderr
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 1
    data = json.loads(again.stdout)
    assert (data["prepared_now"], data["reused"], data["samples"]) == (0, 5, 3)
    assert data["rejects_by_reason"] == {"corrupt-video": 1, "missing-video": 1, "too-short": 1}


def test_clean_data_exits_0_and_stats(vip, tmp_path):
    ann, videos = vip
    good = json.loads(ann.read_text())[:2]
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps(good))
    r = runner.invoke(app, ["prepare", "vip200k", "-a", str(clean), "--videos", str(videos),
                            "--out", str(tmp_path / "p"), *SMALL])  # fmt: skip
    assert r.exit_code == 0, r.output
    s = runner.invoke(app, ["prepare", "stats", str(tmp_path / "p"), "--json"])
    assert s.exit_code == 0, s.output
    stats = json.loads(s.stdout)
    assert (stats["samples"], stats["identities"], stats["rejected"], stats["ref_same_segment"]) == (
        3,
        2,
        0,
        1,
    )
    assert stats["buckets"] == {"96x128x21": 2, "96x128x29": 1}
    assert stats["caption_words"] == {"min": 3.0, "median": 3.0, "max": 3.0}
    text = runner.invoke(app, ["prepare", "stats", str(tmp_path / "p")])
    assert "identities: 2" in text.stdout


def test_list_missing_writes_the_absent_ids(vip, tmp_path):
    ann, videos = vip
    dest = tmp_path / "todo.txt"
    r = runner.invoke(
        app, ["prepare", "vip200k", "-a", str(ann), "--videos", str(videos), "--list-missing", str(dest)]
    )
    assert r.exit_code == 0, r.output
    assert dest.read_text() == "gone\n" and "1 video id(s)" in r.stdout


def test_bad_input_is_one_line_before_any_work(vip, tmp_path):
    ann, videos = vip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"faces": [], "segments": [{"id": "x"}]}]))
    r = runner.invoke(
        app, ["prepare", "vip200k", "-a", str(bad), "--videos", str(videos), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1
    assert "entry 0: segments[0].clip" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    r = runner.invoke(app, ["prepare", "vip200k", "-a", str(ann), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--videos DIR" in r.stderr
    r = runner.invoke(
        app, ["prepare", "reactid", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and "no Jsons/ folder" in r.stderr


def test_reactid_command(tmp_path):
    root = reactid_tree(tmp_path / "r")
    r = runner.invoke(
        app, ["prepare", "reactid", "--root", str(root), "--out", str(tmp_path / "p"), *SMALL, "--json"]
    )
    assert r.exit_code == 1  # c00_clip.mp4 has no video
    data = json.loads(r.stdout)
    assert data["samples"] == 2 and data["rejects_by_reason"] == {"missing-video": 1}
    rejects = (tmp_path / "p/rejects.jsonl").read_text()
    assert '"video_id": "c00_clip.mp4"' in rejects


def test_cache_latents_needs_a_model(vip, tmp_path):
    ann, videos = vip
    r = runner.invoke(app, ["prepare", "vip200k", "-a", str(ann), "--videos", str(videos), "--out", str(tmp_path / "o"),
                            "--cache-latents"])  # fmt: skip
    assert r.exit_code == 2 and "--cache-latents needs --model" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cache_latents_then_prepare_cache_reuses(vip, tmp_path):
    ann, videos = vip
    good = tmp_path / "good.json"
    good.write_text(json.dumps(json.loads(ann.read_text())[1:2]))  # good2: one sample
    out, models = tmp_path / "p", tmp_path / "models"
    args = ["prepare", "vip200k", "-a", str(good), "--videos", str(videos), "--out", str(out), "-q",
            "--face-backend", "none", "--set", "sample.buckets=[32x32]", "--set", "sample.max_frames=5",
            "--cache-latents", "--model", "tiny-wan", "--models-dir", str(models)]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "cache: 1 cached, 0 reused (tiny-wan@" in r.stdout
    again = runner.invoke(app, ["prepare", "cache", "--data", str(out), "--model", "tiny-wan", "--models-dir",
                                str(models), "--device", "cpu", "-q"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "cache: 0 cached, 1 reused" in again.stdout
