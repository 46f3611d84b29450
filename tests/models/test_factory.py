"""load_backend: built-in tiny models, local folders, hub ids (offline), option validation."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from ipvgkit.errors import CaseError, InputError, MissingWeightsError, UsageError
from ipvgkit.models import ModelOptions, VideoBackend, load_backend
from ipvgkit.models.tiny import materialise_tiny

from .conftest import request


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_tiny_wan_is_written_once_and_identical_every_time(models_dir, tmp_path):
    first = materialise_tiny("tiny-wan", models_dir)
    assert first == models_dir / "tiny-wan"
    assert (first / "model_index.json").is_file() and (first / "transformer" / "config.json").is_file()
    stamp = (first / "model_index.json").stat().st_mtime_ns
    assert materialise_tiny("tiny-wan", models_dir) == first
    assert (first / "model_index.json").stat().st_mtime_ns == stamp  # not rewritten
    t0 = time.perf_counter()
    other = materialise_tiny("tiny-wan", tmp_path)
    assert time.perf_counter() - t0 < 10
    assert _files(other) == _files(first)  # same seed, same bytes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    cfg = json.loads((first / "transformer" / "config.json").read_text())
    assert cfg["num_layers"] == 2 and cfg["rope_max_seq_len"] >= 1024


def test_load_backend_tiny_wan(tiny_wan):
    assert isinstance(tiny_wan, VideoBackend)
    tiny_wan.load()
    assert tiny_wan.pipeline().transformer.config.num_layers == 2
    assert tiny_wan.name == "wan"
    d = tiny_wan.describe()
    assert d["pipeline"] == "WanPipeline" and d["model"] == "tiny-wan" and d["model_source"] == "tiny"


def test_load_backend_from_local_folder(models_dir, tmp_path):
    folder = shutil.copytree(materialise_tiny("tiny-wan", models_dir), tmp_path / "my-wan")
    backend = load_backend(ModelOptions(model=str(folder)))
    assert backend.describe()["model_source"] == "local"
    assert backend.generate(request()).shape == (9, 32, 32, 3)


def test_pipeline_class_picks_the_backend(models_dir):
    assert load_backend(ModelOptions(model="tiny-wan-vace", models_dir=models_dir)).name == "wan-vace"
    assert load_backend(ModelOptions(model="tiny-wan-i2v", models_dir=models_dir)).name == "wan"
    with pytest.raises(UsageError, match="cannot run model"):
        load_backend(ModelOptions(model="tiny-wan", backend="wan-vace", models_dir=models_dir))
    with pytest.raises(UsageError, match="unknown backend"):
        load_backend(ModelOptions(model="tiny-wan", backend="sora", models_dir=models_dir))


def test_unsupported_pipeline_and_bad_folders(tmp_path):
    sd = tmp_path / "sd"
    sd.mkdir()
    (sd / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UsageError, match="StableDiffusionPipeline"):
        load_backend(ModelOptions(model=str(sd)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no model_index.json"):
        load_backend(ModelOptions(model=str(empty)))
    with pytest.raises(UsageError, match="neither a built-in"):
        load_backend(ModelOptions(model="./no/such/folder/x", models_dir=tmp_path))


def test_hub_id_not_cached_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    t0 = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        load_backend(ModelOptions(model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", models_dir=tmp_path))
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert (
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg
        and "hf download" in msg
        and "huggingface-cli download" in msg
    )


def test_hub_id_from_the_hf_cache(monkeypatch, models_dir, tmp_path):
    """A hub id found in the HF cache layout (models--org--name/snapshots/<rev>, refs/main) loads offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-wan-diffusers"
    rev = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(materialise_tiny("tiny-wan", models_dir), repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    backend = load_backend(ModelOptions(model="someone/tiny-wan-diffusers", models_dir=tmp_path))
    assert backend.describe()["model_source"] == "hub"
    assert backend.describe()["model_folder"].endswith(rev)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dtype", "fp8", "bf16, fp16, fp32"),
        ("offload", "disk", "none, model, sequential"),
        ("cache", "teacache", "none, first-block"),
        ("cache", "faster-cache", "batched classifier-free guidance"),
        ("cache", "pab", "unconditional pass"),
        ("identity", "photomaker", "reference-concat"),
        ("identity", "vace", "not available"),
        ("device", "tpu", "auto, cpu, cuda"),
        ("lora_scale", -1.0, "lora_scale"),
    ],
)
def test_bad_options_are_usage_errors(models_dir, field, value, match):
    with pytest.raises(UsageError, match=match):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, **{field: value}))


def test_missing_lora_is_an_input_error(models_dir, tmp_path):
    with pytest.raises(InputError, match="LoRA not found"):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, lora=[tmp_path / "nope"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="pytorch_lora_weights.safetensors"):
        load_backend(ModelOptions(model="tiny-wan", models_dir=models_dir, lora=[tmp_path / "empty"]))


def _consisid_folder(tmp_path):
    folder = tmp_path / "ConsisID-preview"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "ConsisIDPipeline"}))
    return folder


def test_consisid_without_face_weights_names_the_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.insightface
    folder = _consisid_folder(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        load_backend(ModelOptions(model=str(folder), models_dir=tmp_path / "models"))
    msg = str(info.value)
    assert "antelopev2" in msg and "EVA02_CLIP_L_336_psz14_s6B.pt" in msg
    assert "BestWishYsh/ConsisID-preview" in msg and "face_encoder" in msg


def test_consisid_frame_arithmetic_and_identity(monkeypatch, tmp_path, tom_hanks):
    """With the face weight files in place (here: placeholders, enough to locate them) the backend checks
    requests against ConsisID's fixed format: 49 frames, 720x480, 8 fps."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = _consisid_folder(tmp_path)
    (folder / "face_encoder" / "models" / "antelopev2").mkdir(parents=True)
    (folder / "face_encoder" / "models" / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    (folder / "face_encoder" / "EVA02_CLIP_L_336_psz14_s6B.pt").write_bytes(b"x")
    backend = load_backend(ModelOptions(model=str(folder), models_dir=tmp_path / "models"))
    assert backend.name == "consisid"
    ok = request(num_frames=49, height=480, width=720, fps=8.0, ref_images=[tom_hanks])
    backend.check(ok)
    with pytest.raises(CaseError, match="49 frames at 720x480; got 81 frames at 832x480"):
        backend.check(request(num_frames=81, height=480, width=832, fps=8.0, ref_images=[tom_hanks]))
    with pytest.raises(CaseError, match="8 fps"):
        backend.check(request(num_frames=49, height=480, width=720, fps=16.0, ref_images=[tom_hanks]))
    with pytest.raises(CaseError, match="reference image with a face"):
        backend.check(request(num_frames=49, height=480, width=720, fps=8.0))
    d = backend.describe()
    assert (d["frames"], d["size"], d["fps"]) == (49, [720, 480], 8.0)
    with pytest.raises(UsageError, match="not available"):
        load_backend(ModelOptions(model=str(folder), models_dir=tmp_path / "models", identity="none"))


def test_hub_id_with_unreachable_hub_is_a_clear_error(tmp_path):
    """Without HF_HUB_OFFLINE the download is tried; a connection failure becomes MissingWeightsError
    (run in a fresh process: huggingface_hub reads HF_ENDPOINT at import)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(
        HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "hub"), IPVG_MODELS=str(tmp_path)
    )
    code = (
        "from ipvgkit.models import ModelOptions, load_backend\n"
        "from ipvgkit.errors import MissingWeightsError\n"
        "try:\n    load_backend(ModelOptions(model='Wan-AI/Wan2.1-VACE-1.3B-diffusers'))\n"
        "except MissingWeightsError as e:\n    print('MISSING', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MISSING" in out.stdout and "hf download Wan-AI/Wan2.1-VACE-1.3B-diffusers" in out.stdout


def test_consisid_face_inputs_run_up_to_eva_clip(monkeypatch, tmp_path):
    """Real face path on a tiny insightface pack (tests.support.tiny_models): no face → InputError; a face
    is detected and embedded, then EVA02-CLIP needs the consisid_eva_clip package (not installed here)."""
    from PIL import Image

    from ipvgkit.errors import MissingDependencyError
    from tests.support.tiny_models import make_pack, square_image

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = _consisid_folder(tmp_path)
    make_pack(folder / "face_encoder" / "models" / "antelopev2")
    (folder / "face_encoder" / "EVA02_CLIP_L_336_psz14_s6B.pt").write_bytes(b"x")
    backend = load_backend(ModelOptions(model=str(folder), models_dir=tmp_path / "models"))
    blank = tmp_path / "blank.png"
    Image.new("RGB", (640, 640)).save(blank)
    with pytest.raises(InputError, match="no face found"):
        backend.face_inputs(blank)
    face = tmp_path / "face.png"
    Image.fromarray(square_image(size=640, square=32, center=(320, 320))).save(face)
    with pytest.raises(MissingDependencyError, match="consisid_eva_clip"):
        backend.face_inputs(face)


def test_ranks_that_start_together_write_tiny_wan_once(tmp_path):
    """Three processes materialise into one empty folder at once: one writes, all load the same copy."""
    import os
    import subprocess
    import sys

    code = (
        "import os, sys; from ipvgkit.models.tiny import materialise_tiny\n"
        "from diffusers import WanPipeline\n"
        "d = materialise_tiny('tiny-wan', sys.argv[1]); WanPipeline.from_pretrained(d)\n"
        "print(os.stat(d / 'model_index.json').st_ino)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len({o[-1] for o in outs}) == 1  # every process saw the one copy, nobody replaced it
    assert os.stat(tmp_path / "tiny-wan" / "model_index.json").st_ino == int(outs[0][-1])
