"""``ipvg finetune --method face-adapter`` then ``ipvg generate --identity face-adapter --adapter RUN/final``
end to end on a prep folder with real dlib face embeddings (Track 1, and Track 2 with the timeline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.models import face_adapter as fa
from ipvgkit.stages.generate import read_generation_log
from tests.stages.finetune_prep import make_prep
from tests.stages.test_generate import write_testset_b, write_testset_c

pytest.importorskip("dlib")
runner = CliRunner()
SMALL = ["--model", "tiny-wan", "--frames", "9", "--height", "32", "--width", "32", "--quiet"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def run(models_dir, tmp_path_factory) -> Path:
    prep = make_prep(tmp_path_factory.mktemp("prep"), events=True, faces=True)
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["finetune", "--data", str(prep), *SMALL, "--out", str(out), "--max-steps", "3",
            "--method", "face-adapter", "--set", "optim.lr=0.01", "--models-dir", str(models_dir)]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return out


def _generate(cases: Path, out: Path, models_dir: Path, *extra: str):
    args = ["generate", "--cases", str(cases), *SMALL, "--steps", "2", "--out", str(out), "--seed", "3",
            "--models-dir", str(models_dir), *extra]  # fmt: skip
    return runner.invoke(app, args)


def test_generate_with_the_face_adapter(run, models_dir, tmp_path):
    assert (run / "final" / fa.WEIGHTS_FILE).is_file() and (run / "final" / fa.CONFIG_FILE).is_file()
    cases = write_testset_b(tmp_path / "ts", n=1)
    faced = tmp_path / "faced"
    r = _generate(cases, faced, models_dir, "--track", "1", "--identity", "face-adapter",
                  "--adapter", str(run / "final"))  # fmt: skip
    assert r.exit_code == 0, r.output
    (rec,) = read_generation_log(faced)
    assert rec["status"] == "ok" and rec["settings"]["identity"] == "face-adapter"
    # --adapter alone: auto runs the face adapter too
    auto = tmp_path / "auto"
    r = _generate(cases, auto, models_dir, "--track", "1", "--adapter", str(run / "final"))
    assert r.exit_code == 0, r.output
    (rec_auto,) = read_generation_log(auto)
    assert rec_auto["settings"]["identity"] == "face-adapter"
    plain = tmp_path / "plain"
    r = _generate(cases, plain, models_dir, "--track", "1", "--identity", "none")
    assert r.exit_code == 0, r.output
    (rec_plain,) = read_generation_log(plain)
    assert rec_plain["seed"] == rec["seed"]
    same = (auto / rec_auto["output_name"]).read_bytes() == (faced / rec["output_name"]).read_bytes()
    assert same  # auto and the explicit mode are one computation
    # the trained adapter changes the video (same seed, same encoder)
    assert (faced / rec["output_name"]).read_bytes() != (plain / rec_plain["output_name"]).read_bytes()


def test_face_adapter_with_a_timeline_case(run, models_dir, tmp_path):
    cases = write_testset_c(tmp_path / "ts", n=1)
    out = tmp_path / "out"
    r = _generate(cases, out, models_dir, "--track", "2", "--identity", "face-adapter",
                  "--adapter", str(run / "final"))  # fmt: skip
    assert r.exit_code == 0, r.output
    (rec,) = read_generation_log(out)
    assert rec["status"] == "ok", rec


def test_usage_errors(run, models_dir, tmp_path):
    cases = write_testset_b(tmp_path / "ts", n=1)
    r = _generate(cases, tmp_path / "o1", models_dir, "--track", "1", "--identity", "face-adapter")
    assert r.exit_code == 2 and "--identity face-adapter needs --adapter DIR" in r.output
    bad = tmp_path / "bad"
    shutil.copytree(run / "final", bad)
    conf = json.loads((bad / fa.CONFIG_FILE).read_text())
    conf["embed_dim"], conf["face_backend"] = 512, "dlib"
    (bad / fa.CONFIG_FILE).write_text(json.dumps(conf))
    r = _generate(cases, tmp_path / "o2", models_dir, "--track", "1", "--adapter", str(bad))
    assert r.exit_code == 1
    assert "the dlib face embedding is 128-d, the adapter" in r.output and "takes 512-d" in r.output
    (rec,) = read_generation_log(tmp_path / "o2")
    assert rec["status"] == "failed" and "takes 512-d" in rec["error"]
    conf["embed_dim"] = 128
    (bad / fa.CONFIG_FILE).write_text(json.dumps(conf))
    state = load_file(str(bad / fa.WEIGHTS_FILE))
    state["scale"] = torch.zeros(3)
    save_file(state, str(bad / fa.WEIGHTS_FILE))
    r = _generate(cases, tmp_path / "o3", models_dir, "--track", "1", "--adapter", str(bad))
    assert r.exit_code == 1 and "key 'scale' has shape (3,), expected (2,)" in r.output


def test_adapter_on_a_model_that_cannot_run_it(run, models_dir, tmp_path):
    cases = write_testset_b(tmp_path / "ts", n=1)
    for model in ("tiny-wan-i2v", "tiny-wan-vace"):
        args = ["generate", "--cases", str(cases), "--model", model, "--frames", "9", "--height", "32",
                "--width", "32", "--quiet", "--out", str(tmp_path / model), "--models-dir", str(models_dir),
                "--adapter", str(run / "final")]  # fmt: skip
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "--adapter (a face adapter) runs on Wan" in r.output, r.output
