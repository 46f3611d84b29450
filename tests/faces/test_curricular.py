"""CurricularFace IR loader (state dict with inferred architecture, or TorchScript) and InceptionV3 loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ipvgkit.errors import InputError
from ipvgkit.faces.curricular import CurricularFace, load_curricularface
from ipvgkit.faces.inception import InceptionFeatures, load_inception
from tests.faces.tiny_models import save_tiny_inception, tiny_ir


@pytest.mark.parametrize("affine", [False, True])
def test_state_dict_architecture_is_inferred(tmp_path, affine):
    net = tiny_ir(seed=1, affine=affine)
    path = tmp_path / "ir.bin"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    loaded = load_curricularface(path)
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_torchscript_and_embed_crops(tmp_path):
    net = tiny_ir(seed=2)
    path = tmp_path / "ir.pt"
    torch.jit.script(net).save(str(path))
    cur = CurricularFace(path)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    emb = cur.embed_crops(crops, batch_size=2)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ref = net((x / 255.0 - 0.5) / 0.5).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(emb, ref, atol=1e-5)


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


def test_inception_features(tmp_path):
    path = save_tiny_inception(tmp_path / "inc.pt")
    inc = InceptionFeatures(path)
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    feats = inc.features(crops)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    ref = torch.jit.load(str(path))(x).detach().numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-6)
    assert feats.shape == (2, 24)


def test_inception_export_cli_usage(tmp_path, capsys):
    from ipvgkit.faces.inception import main

    assert main([]) == 2
    assert "usage: python -m ipvgkit.faces.inception export OUT.pt" in capsys.readouterr().err


def test_inception_export_needs_torchvision(tmp_path):
    from ipvgkit.errors import MissingDependencyError
    from ipvgkit.faces.inception import export_torchvision_inception

    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure is the case under test
        pass
    else:
        pytest.skip("torchvision imports here")
    with pytest.raises(MissingDependencyError, match="torchvision"):
        export_torchvision_inception(tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
