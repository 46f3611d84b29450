"""``ipvg models fetch`` against a local server in the hub's resolve layout (real huggingface_hub, real
subprocesses), and ConsisID's checkpoint layout found as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.hub_server import HubServer
from tests.support.tiny_models import export_detector, export_recognizer, make_tiny_clip, tiny_ir

CONSISID = "BestWishYsh/ConsisID-preview"
CLIP = "openai/clip-vit-base-patch32"
CUR = "face_encoder/glint360k_curricular_face_r101_backbone.bin"


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    d = tmp_path_factory.mktemp("hubfiles")
    torch.save(tiny_ir(seed=4).state_dict(), d / "cur.bin")
    export_detector(d / "det.onnx")
    export_recognizer(d / "rec.onnx")
    make_tiny_clip(d / "clip")
    consisid = {
        CUR: (d / "cur.bin").read_bytes(),
        "face_encoder/models/buffalo_l/det_10g.onnx": (d / "det.onnx").read_bytes(),
        "face_encoder/models/buffalo_l/w600k_r50.onnx": (d / "rec.onnx").read_bytes(),
        "face_encoder/models/buffalo_l/1k3d68.onnx": b"landmarks: not needed, must not be fetched",
        "transformer/diffusion_pytorch_model.safetensors": b"not needed either",
    }
    clip = {p.name: p.read_bytes() for p in (d / "clip").iterdir() if p.is_file()}
    clip["tf_model.h5"] = b"TensorFlow weights: not fetched"
    return {CONSISID: consisid, CLIP: clip}


def _env(tmp_path: Path, endpoint: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "IPVG_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_CACHE=str(tmp_path / "hfcache"),
        HF_HOME=str(tmp_path / "hfhome"),
        HOME=str(tmp_path / "home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")]),
        COLUMNS="80",
        **extra,
    )
    return env


def _ipvg(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipvgkit", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_fetch_into_consisid_layout_and_found_there(tmp_path, repos):
    models = tmp_path / "ckpts"
    with HubServer(repos) as hub:
        env = _env(tmp_path, hub.url)
        r = _ipvg(["models", "fetch", "facesim_cur", "clipscore", "--models-dir", str(models), "--json"], env)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert set(out["fetched"]) == {"buffalo_l", "curricularface-ir101", "clip-vit-b-32"}
        assert (models / CUR).read_bytes() == repos[CONSISID][CUR]
        # ConsisID's layout, only what is needed
        pack = models / "face_encoder" / "models" / "buffalo_l"
        assert sorted(p.name for p in pack.iterdir() if p.is_file()) == ["det_10g.onnx", "w600k_r50.onnx"]
        assert not (models / "transformer").exists()
        clip = models / "clip-vit-base-patch32"
        assert (clip / "config.json").is_file() and not (clip / "tf_model.h5").exists()
        # a second fetch finds everything present and downloads nothing
        n = len(hub.log)
        again = _ipvg(
            ["models", "fetch", "facesim_cur", "clipscore", "--models-dir", str(models), "--json"], env
        )
        assert again.returncode == 0 and json.loads(again.stdout)["fetched"] == {}
        assert not [x for x in hub.log[n:] if "/resolve/" in x[1]]
    listing = _ipvg(["models", "--models-dir", str(models), "--json"], env)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["curricularface-ir101"]["path"] == str(models / CUR)
    assert rows["buffalo_l"]["path"] == str(pack)


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    # huggingface_hub writes in 10 MB chunks: the file must be larger for a partial chunk to be kept
    data = os.urandom(24 * 1024 * 1024)
    with HubServer({CONSISID: {CUR: data}}, truncate={f"{CONSISID}/{CUR}"}) as hub:
        r = _ipvg(
            ["models", "fetch", "curricularface-ir101", "--models-dir", str(tmp_path / "m")],
            _env(tmp_path, hub.url),
        )
        assert r.returncode == 0, r.stderr
        gets = [x for x in hub.log if x[0] == "GET" and x[1].endswith(CUR)]
    assert len(gets) == 2 and gets[0][2] is None and gets[1][2] == f"bytes={10 * 1024 * 1024}-"
    assert (tmp_path / "m" / CUR).read_bytes() == data
    assert "Traceback" not in r.stderr


def test_fetch_names_what_is_not_on_the_hub(tmp_path, repos):
    with HubServer(repos) as hub:
        r = _ipvg(
            ["models", "fetch", "consisid", "--models-dir", str(tmp_path / "m")], _env(tmp_path, hub.url)
        )
    assert r.returncode == 1
    assert "inception-v3-fid" in r.stderr and "export-inception" in r.stderr
    assert (tmp_path / "m" / CUR).is_file()  # what the hub has was fetched all the same


def test_fetch_missing_on_hub_is_a_problem(tmp_path):
    with HubServer({CONSISID: {}, CLIP: {}}) as hub:
        r = _ipvg(
            ["models", "fetch", "facesim_cur", "--models-dir", str(tmp_path / "m")], _env(tmp_path, hub.url)
        )
    assert r.returncode == 1 and "curricularface-ir101" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("how", ["offline_env", "unreachable"])
def test_offline_is_one_line_naming_the_command(tmp_path, how):
    extra = {"HF_HUB_OFFLINE": "1"} if how == "offline_env" else {}
    env = _env(tmp_path, "http://127.0.0.1:9", **extra)  # port 9 (discard): nothing listens
    r = _ipvg(["models", "fetch", "facesim_cur", "--models-dir", str(tmp_path / "m")], env)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "ipvg models fetch facesim_cur --models-dir DIR" in lines[0] and "Traceback" not in r.stderr


def test_consisid_checkpoint_folder_found_as_is(tmp_path, repos):
    """CKPTS/face_encoder/models/buffalo_l, CKPTS/face_encoder/<cur>.bin, CKPTS/data_process/clip-..."""
    from ipvgkit.faces import files
    from ipvgkit.metrics.clip import CLIP_B32
    from ipvgkit.weights import locate

    ck = tmp_path / "ckpts"
    for rel, data in repos[CONSISID].items():
        (ck / rel).parent.mkdir(parents=True, exist_ok=True)
        (ck / rel).write_bytes(data)
    clip = ck / "data_process" / "clip-vit-base-patch32"
    clip.mkdir(parents=True)
    for name, data in repos[CLIP].items():
        (clip / name).write_bytes(data)
    assert locate(files.BUFFALO_L, ck) == ck / "face_encoder" / "models" / "buffalo_l"
    assert locate(files.CURRICULARFACE, ck) == ck / CUR
    assert locate(CLIP_B32, ck) == clip
    # and the metrics load from it
    from ipvgkit.metrics import MetricContext, get_metric

    for name in ("facesim_cur", "clipscore"):
        get_metric(name).load(MetricContext(models_dir=ck))
