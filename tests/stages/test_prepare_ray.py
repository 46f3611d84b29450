"""--engine ray: one small local Ray run gives the same manifest as the local engine."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipvgkit.stages.prepare import PrepareConfig, run_prepare
from ipvgkit.stages.prepare_work import SampleSettings
from tests.data.sources.builders import vip200k_dataset

SMALL = SampleSettings(buckets=["96x128"], max_frames=33)


@pytest.mark.slow
def test_ray_engine_gives_the_local_manifest(tmp_path):
    pytest.importorskip("ray.data")
    ann, videos = vip200k_dataset(tmp_path / "d")
    common = dict(source="vip200k", annotations=ann, videos=videos, face_backend="none", sample=SMALL)
    local = run_prepare(PrepareConfig(out=tmp_path / "local", workers=1, **common))
    ray_rep = run_prepare(PrepareConfig(out=tmp_path / "ray", engine="ray", workers=2, **common))
    assert ray_rep.engine == "ray" and ray_rep.done_now == local.done_now == 5
    a = (tmp_path / "local/manifest.jsonl").read_bytes()
    assert a == (tmp_path / "ray/manifest.jsonl").read_bytes() and a.count(b"\n") == 3
    assert (tmp_path / "local/rejects.jsonl").read_bytes() == (tmp_path / "ray/rejects.jsonl").read_bytes()


BLOCK_RAY = """
import sys
class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoRay())
from ipvgkit.cli.app import main
main(sys.argv[1:])
"""


def test_without_ray_the_engine_is_a_clear_error_naming_the_extra(tmp_path):
    ann, videos = vip200k_dataset(tmp_path / "d")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    args = ["prepare", "vip200k", "-a", str(ann), "--videos", str(videos), "--out", str(tmp_path / "o"),
            "--engine", "ray"]  # fmt: skip
    r = subprocess.run([sys.executable, "-c", BLOCK_RAY, *args], env=env, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert "pip install 'ipvgkit[ray]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # before any work
