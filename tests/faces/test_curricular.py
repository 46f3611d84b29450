"""CurricularFace IR loader (ConsisID's real IR-101 layout, older layout, TorchScript) and InceptionV3 loader."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ipvgkit.errors import InputError, MissingDependencyError
from ipvgkit.faces.curricular import CurricularFace, load_curricularface
from ipvgkit.faces.inception import InceptionFeatures, load_inception
from tests.support.tiny_models import save_tiny_inception, tiny_ir


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


# -- ConsisID's glint360k_curricular_face_r101_backbone.bin: the key table of TFace's IR-101 -----------
def _bn(keys: dict, prefix: str, c: int, affine: bool = True) -> None:
    if affine:
        keys[f"{prefix}.weight"] = (c,)
        keys[f"{prefix}.bias"] = (c,)
    keys[f"{prefix}.running_mean"] = (c,)
    keys[f"{prefix}.running_var"] = (c,)
    keys[f"{prefix}.num_batches_tracked"] = ()


def ir101_key_table() -> dict[str, tuple]:
    """Key -> shape of TFace ``Backbone((112,112), 100, 'ir')`` (ConsisID util/on_going_module/curricularface):
    stages of 3, 13, 30, 3 BasicBlockIR units (64, 128, 256, 512 wide), res_layer = BN, conv, BN, PReLU,
    conv, BN; a conv+BN shortcut where the width changes; output BN, Linear(512*7*7, 512), BN1d no affine."""
    keys: dict[str, tuple] = {"input_layer.0.weight": (64, 3, 3, 3)}
    _bn(keys, "input_layer.1", 64)
    keys["input_layer.2.weight"] = (64,)
    unit, in_c = 0, 64
    for n, depth in ((3, 64), (13, 128), (30, 256), (3, 512)):
        for _ in range(n):
            p = f"body.{unit}"
            if in_c != depth:
                keys[f"{p}.shortcut_layer.0.weight"] = (depth, in_c, 1, 1)
                _bn(keys, f"{p}.shortcut_layer.1", depth)
            _bn(keys, f"{p}.res_layer.0", in_c)
            keys[f"{p}.res_layer.1.weight"] = (depth, in_c, 3, 3)
            _bn(keys, f"{p}.res_layer.2", depth)
            keys[f"{p}.res_layer.3.weight"] = (depth,)
            keys[f"{p}.res_layer.4.weight"] = (depth, depth, 3, 3)
            _bn(keys, f"{p}.res_layer.5", depth)
            unit, in_c = unit + 1, depth
    _bn(keys, "output_layer.0", 512)
    keys["output_layer.3.weight"] = (512, 512 * 7 * 7)
    keys["output_layer.3.bias"] = (512,)
    _bn(keys, "output_layer.4", 512, affine=False)
    return keys


def random_state_dict(table: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in table.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7, dtype=torch.long)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("running_mean") or k.endswith(".bias"):
            sd[k] = (torch.rand(shape, generator=g) - 0.5) * 0.2
        elif len(shape) == 1:  # BN weight, PReLU slope
            sd[k] = torch.rand(shape, generator=g) * 0.5 + 0.75
        else:  # conv / linear: scaled so activations stay O(1) through 49 residual units
            fan_in = int(np.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) * (0.5 / fan_in**0.5)
    return sd


def functional_ir(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The IR-101 forward written with torch.nn.functional straight from the key table (eval mode)."""

    def bn(p, t):
        w, b = sd.get(f"{p}.weight"), sd.get(f"{p}.bias")
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], w, b, False, 0.0, 1e-5)

    x = F.prelu(
        bn("input_layer.1", F.conv2d(x, sd["input_layer.0.weight"], padding=1)), sd["input_layer.2.weight"]
    )
    unit = 0
    for n in (3, 13, 30, 3):
        for j in range(n):
            p, stride = f"body.{unit}", 2 if j == 0 else 1
            if f"{p}.shortcut_layer.0.weight" in sd:
                sc = bn(
                    f"{p}.shortcut_layer.1", F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride)
                )
            else:
                sc = x[:, :, ::stride, ::stride]  # MaxPool2d(1, stride)
            r = F.conv2d(bn(f"{p}.res_layer.0", x), sd[f"{p}.res_layer.1.weight"], padding=1)
            r = F.prelu(bn(f"{p}.res_layer.2", r), sd[f"{p}.res_layer.3.weight"])
            r = bn(f"{p}.res_layer.5", F.conv2d(r, sd[f"{p}.res_layer.4.weight"], stride=stride, padding=1))
            x, unit = r + sc, unit + 1
    x = bn("output_layer.0", x).flatten(1)
    x = F.linear(x, sd["output_layer.3.weight"], sd["output_layer.3.bias"])
    return bn("output_layer.4", x)


@pytest.fixture(scope="module")
def real_layout_file(tmp_path_factory):
    table = ir101_key_table()
    sd = random_state_dict(table)
    path = tmp_path_factory.mktemp("cur") / "glint360k_curricular_face_r101_backbone.bin"
    torch.save(sd, path)
    return path, table, sd


def test_ir101_key_table_counts():
    table = ir101_key_table()
    # 7 input keys, 49 units x 18 keys + 3 conv shortcuts x 6 keys, 10 output keys
    assert len(table) == 7 + 49 * 18 + 3 * 6 + 10 == 917
    assert sum(int(np.prod(s)) for k, s in table.items() if not k.endswith("num_batches_tracked")) > 6.5e7


def test_real_layout_ir101_loads_strictly_and_embeds(real_layout_file):
    path, table, sd = real_layout_file
    model = load_curricularface(path)
    own = model.state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == table
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), functional_ir(sd, x), rtol=1e-4, atol=1e-4)
    cur = CurricularFace(path)
    crop = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    emb = cur.embed_crops([crop])
    assert emb.shape == (1, 512) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5


def test_real_layout_without_batch_counters_loads(tmp_path, real_layout_file):
    _, _, sd = real_layout_file
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.bin"
    torch.save(old, path)
    assert len(load_curricularface(path).state_dict()) == 917


def test_file_that_does_not_fit_names_file_and_first_key(tmp_path):
    net = tiny_ir(seed=3)
    sd = dict(net.state_dict())
    sd["body.2.res_layer.3.weight"] = torch.zeros(5, 5)  # a conv weight of the wrong shape
    path = tmp_path / "bad.bin"
    torch.save(sd, path)
    with pytest.raises(InputError) as e:
        load_curricularface(path)
    msg = str(e.value)
    assert str(path) in msg and "first mismatched key: body.2.res_layer.3.weight" in msg
    assert "\n" not in msg
    sd = dict(net.state_dict())
    sd["body.0.res_layer.9.weight"] = torch.zeros(3)
    torch.save(sd, path)
    with pytest.raises(InputError, match=r"first mismatched key: body\.0\.res_layer\.9\.weight unexpected"):
        load_curricularface(path)


@pytest.mark.parametrize("affine", [False, True])
def test_state_dict_architecture_is_inferred(tmp_path, affine):
    net = tiny_ir(seed=1, affine=affine)
    path = tmp_path / "ir.bin"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    loaded = load_curricularface(path)
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def _cur_reference(net, crops):
    """SPEC §4 FaceSim-Cur input: cv2.resize of the uint8 crop to 112, float, /255, (x-0.5)/0.5, NCHW."""
    x = np.stack([cv2.resize(c, (112, 112)) for c in crops]).astype(np.float32)
    x = np.ascontiguousarray(((x / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    return ref / np.linalg.norm(ref, axis=1, keepdims=True)


def test_torchscript_and_embed_crops_uint8_resize(tmp_path, tom_hanks):
    net = tiny_ir(seed=2)
    path = tmp_path / "ir.pt"
    torch.jit.script(net).save(str(path))
    cur = CurricularFace(path)
    face = np.asarray(Image.open(tom_hanks).convert("RGB").resize((224, 224)))
    rng = np.random.default_rng(0)
    crops = [face] + [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    emb = cur.embed_crops(crops, batch_size=2)
    np.testing.assert_allclose(emb, _cur_reference(net, crops), atol=1e-5)
    # the uint8 rounding of the resize is part of the rule: a float resize gives another number
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    with torch.no_grad():
        fl = net((x / 255.0 - 0.5) / 0.5).numpy()
    fl /= np.linalg.norm(fl, axis=1, keepdims=True)
    assert np.abs(fl - emb).max() > 1e-4


def test_bad_files(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="neither a TorchScript file nor a torch state dict"):
        load_curricularface(junk)
    other = tmp_path / "other.bin"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(InputError, match="not an IR backbone"):
        load_curricularface(other)
    with pytest.raises(InputError, match="not a TorchScript file"):
        load_inception(junk)


def test_inception_features_pil_resize_then_to_tensor(tmp_path, tom_hanks):
    path = save_tiny_inception(tmp_path / "inc.pt")
    inc = InceptionFeatures(path)
    face = np.asarray(Image.open(tom_hanks).convert("RGB").resize((224, 224)))
    rng = np.random.default_rng(1)
    crops = [face, rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)]
    feats = inc.features(crops)
    # reference: torchvision's Resize((299, 299)) on a PIL image is PIL's antialiased bilinear resize,
    # ToTensor is uint8 / 255 in CHW
    x = np.stack([np.asarray(Image.fromarray(c).resize((299, 299), Image.BILINEAR)) for c in crops]).astype(
        np.float32
    )
    x = torch.from_numpy((x / 255.0).transpose(0, 3, 1, 2).copy())
    net = torch.jit.load(str(path))
    ref = net(x).detach().numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)
    assert feats.shape == (2, 24)
    # a float tensor resize (no uint8 rounding, another grid) is a different network input on the real face
    y = torch.from_numpy(face.copy()).permute(2, 0, 1)[None].float() / 255.0
    y = F.interpolate(y, size=(299, 299), mode="bilinear", align_corners=False)
    assert float((y[0] - x[0]).abs().max()) > 0.5 / 255


def test_inception_export_cli_usage(tmp_path, capsys):
    from ipvgkit.faces.inception import main

    assert main([]) == 2
    assert "usage: python -m ipvgkit.faces.inception export OUT.pt" in capsys.readouterr().err


def test_torchvision_state_dict_without_torchvision_is_a_clear_error(tmp_path):
    if _torchvision_imports():
        pytest.skip("torchvision imports here: the state-dict path is tested by the next test")
    path = tmp_path / "inception_v3_google.pth"
    torch.save({"Mixed_7c.branch_pool.conv.weight": torch.zeros(192, 2048, 1, 1)}, path)
    with pytest.raises(MissingDependencyError, match="ipvg models export-inception"):
        load_inception(path)


def test_torchvision_state_dict_loads_when_torchvision_imports(tmp_path):
    if not _torchvision_imports():
        pytest.skip("torchvision does not import beside this torch build (SPEC §6)")
    from torchvision.models import inception_v3

    sd = inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict()
    path = tmp_path / "inc.pth"
    torch.save(sd, path)
    model = load_inception(path)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 299, 299)).shape == (1, 2048)


def test_inception_export_needs_torchvision(tmp_path):
    from ipvgkit.faces.inception import export_torchvision_inception

    if _torchvision_imports():
        pytest.skip("torchvision imports here")
    with pytest.raises(MissingDependencyError, match="torchvision"):
        export_torchvision_inception(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_score_with_a_file_that_does_not_fit_exits_1_with_one_line(tmp_path, tom_hanks):
    """``ipvg score`` loading a CurricularFace file of another layout: exit 1, one line naming file and key."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.stages.test_score import make_submission, make_testset
    from tests.support.tiny_models import make_pack

    models = tmp_path / "models"
    make_pack(models / "insightface" / "buffalo_l")
    sd = dict(tiny_ir(seed=3).state_dict())
    sd["body.1.res_layer.1.weight"] = torch.zeros(8, 8, 1, 1)
    bad = models / "face_encoder" / "glint360k_curricular_face_r101_backbone.bin"  # ConsisID's layout
    bad.parent.mkdir(parents=True)
    torch.save(sd, bad)
    ts = make_testset(tmp_path, tom_hanks, n_ids=1, prompts=1)
    sub = make_submission(tmp_path, ts, tom_hanks)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "COLUMNS": "80"}
    args = ["score", str(sub), "--cases", str(ts), "--metrics", "facesim_cur", "--models-dir", str(models)]
    r = subprocess.run(
        [sys.executable, "-m", "ipvgkit", *args, "-o", str(tmp_path / "out"), "-q"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] and "first mismatched key: body.1.res_layer.1.weight" in lines[0]
