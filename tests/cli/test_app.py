from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from ipvgkit import __version__
from ipvgkit.cli.app import app

runner = CliRunner()


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert __version__ in r.output


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    assert "doctor" in r.output


def test_unknown_command_is_usage_error():
    r = runner.invoke(app, ["frobnicate"])
    assert r.exit_code == 2


def test_help_does_not_import_torch():
    code = (
        "import sys; from ipvgkit.cli.app import app; "
        "from typer.testing import CliRunner; CliRunner().invoke(app, ['--help']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_module_entry_point_runs_main():
    """`python -m ipvgkit` goes through main() and prints JSON on stdout."""
    r = subprocess.run([sys.executable, "-m", "ipvgkit", "doctor", "--json"], capture_output=True, text=True)
    assert r.returncode in (0, 1)
    rows = json.loads(r.stdout)
    assert {"name", "ok", "details", "fix", "required"} <= set(rows[0])


def test_doctor_json_reports_ffmpeg_and_pyav():
    r = runner.invoke(app, ["doctor", "--json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["ffmpeg + libx264"]["ok"] is True
    assert rows["PyAV"]["ok"] is True
    assert rows["python"]["ok"] is True
    assert r.exit_code == (0 if all(x["ok"] for x in rows.values() if x["required"]) else 1)


def test_doctor_models_dir(tmp_path):
    (tmp_path / "clip-vit-base-patch32").mkdir()
    r = runner.invoke(app, ["doctor", "--json", "--models-dir", str(tmp_path)])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["models directory"]["ok"] is True
    assert "clip-vit-base-patch32" in rows["models directory"]["details"]
    r = runner.invoke(app, ["doctor", "--json", "--models-dir", str(tmp_path / "nope")])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["models directory"]["ok"] is False
    assert rows["models directory"]["required"] is False


def test_main_usage_error_exit_2():
    r = subprocess.run(
        [sys.executable, "-m", "ipvgkit", "doctor", "--no-such-flag"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "No such option" in r.stderr


def test_main_maps_our_errors_to_one_line_and_exit_1(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "ipvgkit", "cases", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:")
    assert len(r.stderr.strip().splitlines()) == 1
