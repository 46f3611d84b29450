"""``ipvg models``: the listing, --json, --require exit codes, cheap imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ipvgkit.cli.app import app
from ipvgkit.stages.model_files import registering_modules

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IPVG_MODELS", raising=False)
    models = tmp_path / "models"
    (models / "insightface" / "buffalo_l").mkdir(parents=True)
    (models / "insightface" / "buffalo_l" / "det_10g.onnx").write_bytes(b"x")
    return models


def test_json_lists_every_registered_file(env, tmp_path):
    r = runner.invoke(app, ["models", "--models-dir", str(env), "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    for name in (
        "buffalo_l",
        "antelopev2",
        "curricularface-ir101",
        "inception-v3-fid",
        "dlib-shape-predictor-5",
    ):
        assert name in rows
    assert rows["buffalo_l"]["present"] is True
    assert rows["buffalo_l"]["path"] == str(env / "insightface" / "buffalo_l")
    assert "facesim_arc" in rows["buffalo_l"]["used_by"]
    cur = rows["curricularface-ir101"]
    assert cur["present"] is False and cur["path"] is None
    assert cur["searched"][0] == str(env / "curricularface" / "glint360k_curricular_face_r101_backbone.bin")
    assert any(s.startswith("HF cache " + str(tmp_path / "hf")) for s in cur["searched"])
    assert "BestWishYsh/ConsisID-preview" in cur["source"]
    # files of other modules (metrics, model backends) are listed too
    assert any("clipscore" in row["used_by"] for row in rows.values())


def test_table_and_require(env):
    r = runner.invoke(app, ["models", "--models-dir", str(env)])
    assert r.exit_code == 0
    assert "buffalo_l" in r.output and "missing" in r.output and "present" in r.output
    ok = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "buffalo_l,facesim_dlib"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "facesim_cur"])
    assert bad.exit_code == 1
    assert "curricularface-ir101" in bad.stderr and "glint360k" in bad.stderr
    unknown = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "nope"])
    assert unknown.exit_code == 2 and "unknown model file or user nope" in unknown.stderr


def test_env_var_models_dir(env, monkeypatch):
    monkeypatch.setenv("IPVG_MODELS", str(env))
    r = runner.invoke(app, ["models", "--json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["buffalo_l"]["present"] is True


def test_registering_modules_and_cheap_import():
    mods = registering_modules()
    assert "ipvgkit.faces.files" in mods and "ipvgkit.stages.model_files" not in mods
    code = (
        "import sys; from ipvgkit.stages.model_files import load_registrations; p = load_registrations(); "
        "print(p, [m for m in ('torch', 'onnxruntime', 'dlib', 'insightface') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


def test_help_has_examples():
    r = runner.invoke(app, ["models", "--help"])
    assert r.exit_code == 0 and "--require" in r.output and "Examples" in r.output


def _ipvg(args: list[str], tmp_path, **env_extra) -> subprocess.CompletedProcess:
    import os
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "IPVG_"))}
    src = str(Path(__file__).parents[2] / "src")
    env.update(HF_HUB_CACHE=str(tmp_path / "hf"), HOME=str(tmp_path / "home"), COLUMNS="80", PYTHONPATH=src)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "ipvgkit", *args], env=env, capture_output=True, text=True)


def test_compact_table_fits_80_columns_without_broken_words(env, tmp_path):
    from ipvgkit.stages.model_files import ModelsConfig, list_models

    r = _ipvg(["models", "--models-dir", str(env)], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    paths = {str(env), str(tmp_path / "hf")}  # a folder's path is printed alone on its line
    assert max(len(ln) for ln in lines if ln.strip() not in paths) <= 80, r.stdout
    rows, _ = list_models(ModelsConfig(models_dir=env))
    words = {w for ln in lines for w in ln.replace(",", " ").split()}
    for row in rows:  # every name and user is printed whole (folded between words, never inside one)
        assert row.name in words
        assert set(row.used_by) <= words, (row.name, row.used_by)
    assert "ipvg models --wide" in r.stdout


def test_wide_table_has_paths_and_sources(env, tmp_path):
    r = _ipvg(["models", "--models-dir", str(env), "--wide"], tmp_path, COLUMNS="250")
    assert r.returncode == 0, r.stderr
    assert "get it from" in r.stdout and "BestWishYsh/ConsisID-preview" in r.stdout
    assert "path / where looked" in r.stdout and "insightface/buffalo_l" in r.stdout.replace("\n", "")


def test_require_takes_a_preset(env):
    bad = runner.invoke(app, ["models", "--models-dir", str(env), "--require", "consisid"])
    assert bad.exit_code == 1 and "curricularface-ir101" in bad.stderr and "clip-vit-b-32" in bad.stderr


def test_export_inception_without_torchvision_is_one_line(tmp_path):
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure is the case under test
        pass
    else:
        pytest.skip("torchvision imports here (the export needs its ImageNet weights download)")
    r = _ipvg(["models", "export-inception", "--models-dir", str(tmp_path / "m")], tmp_path)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "torchvision" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "m" / "inception").exists()


def test_models_subcommands_have_help():
    for sub in ("fetch", "export-inception"):
        r = runner.invoke(app, ["models", sub, "--help"])
        assert r.exit_code == 0 and "Examples" in r.output
