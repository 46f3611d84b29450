"""InceptionV3 2048-d features of face crops (``face_feat_dist`` and ``fid``).

The 2025 code used torchvision's ``inception_v3`` with ImageNet weights and ``fc`` replaced by identity
(with weights, torchvision sets ``transform_input=True``, so the network re-normalises its [0,1] input
internally). Two file kinds load:

- a TorchScript file of exactly that network (works without torchvision, which does not import beside
  every torch build); ``ipvg models export-inception`` writes it on a machine where torchvision imports;
- torchvision's own state dict (``inception_v3_google-0cc3c7bd.pth``), when torchvision imports.

Input (SPEC §4): the aligned RGB uint8 224 crop as a PIL image, ``Resize((299, 299))`` (PIL bilinear,
antialiased, uint8 result), ``ToTensor()`` ([0,1], no normalisation) - done here with PIL and numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ipvgkit.errors import InputError, MissingDependencyError

INPUT_SIZE = 299
EXPORT_HINT = "run `ipvg models export-inception` on a machine where torchvision imports"


def _torchvision_inception():
    """``torchvision.models.inception_v3`` and its weights enum, or MissingDependencyError."""
    try:
        from torchvision.models import Inception_V3_Weights, inception_v3
    except Exception as e:  # noqa: BLE001 - torchvision fails to import in several ways
        raise MissingDependencyError(
            f"a torchvision InceptionV3 state dict needs an importable torchvision ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); without it use the TorchScript file: {EXPORT_HINT}"
        ) from None
    return inception_v3, Inception_V3_Weights


def torchvision_feature_net(state_dict: dict | None = None):
    """torchvision's InceptionV3 (``transform_input=True``, ``fc = Identity``) with ``state_dict`` loaded
    strictly, or with torchvision's ImageNet weights (its cache or download) when None."""
    import torch

    inception_v3, weights_enum = _torchvision_inception()
    if state_dict is None:
        model = inception_v3(weights=weights_enum.IMAGENET1K_V1)
    else:
        model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
        model.load_state_dict(state_dict, strict=True)
    model.fc = torch.nn.Identity()
    return model.eval()


def load_inception(path: Path | str, device: str = "cpu"):
    """The feature extractor at ``path`` (TorchScript, or a torchvision state dict) in eval mode."""
    import torch

    path = Path(path)
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a state dict either: report the TorchScript error
        raise InputError(f"{path}: not a TorchScript file ({first}) nor a torch state dict") from None
    if not isinstance(sd, dict) or "Mixed_7c.branch_pool.conv.weight" not in sd:
        raise InputError(f"{path}: not a TorchScript file ({first}) nor a torchvision InceptionV3 state dict")
    try:
        model = torchvision_feature_net(sd)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)
        raise InputError(f"{path}: does not fit torchvision's InceptionV3 ({detail[:200]})") from None
    return model.to(device)


def to_tensor_299(crop_rgb: np.ndarray) -> np.ndarray:
    """(3, 299, 299) float32 in [0,1]: PIL ``resize((299, 299), BILINEAR)`` of the uint8 crop, then ``/255``
    (torchvision's ``Resize((299, 299))`` + ``ToTensor()`` on a PIL image)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(crop_rgb, dtype=np.uint8)).resize(
        (INPUT_SIZE, INPUT_SIZE), Image.BILINEAR
    )
    return (np.asarray(im, dtype=np.float32) / np.float32(255.0)).transpose(2, 0, 1)


def crops_to_tensor(crops_rgb: list[np.ndarray]):
    """(N, 3, 299, 299) float tensor of RGB uint8 crops (:func:`to_tensor_299` each)."""
    import torch

    return torch.from_numpy(np.stack([to_tensor_299(c) for c in crops_rgb]))


class InceptionFeatures:
    """2048-d (or whatever the model returns) features of aligned RGB face crops."""

    def __init__(self, path: Path | str, device: str = "cpu"):
        self.device = device
        self.model = load_inception(path, device)

    def features(self, crops_rgb: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """(N, D) float64 features of RGB uint8 crops."""
        import torch

        if not crops_rgb:
            return np.zeros((0, 0), np.float64)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(crops_rgb), batch_size):
                y = self.model(crops_to_tensor(crops_rgb[i : i + batch_size]).to(self.device))
                if isinstance(y, tuple | list):
                    y = y[0]
                outs.append(y.reshape(y.shape[0], -1).double().cpu().numpy())
        return np.concatenate(outs)


def export_torchvision_inception(out: Path | str, weights: Path | str | None = None) -> Path:
    """Write torchvision's InceptionV3 (``fc = Identity``) as TorchScript to ``out``.

    ``weights``: a torchvision state dict file; None: torchvision's ImageNet weights (its cache/download).
    """
    import torch

    from ipvgkit.fsutil import atomic_path

    _torchvision_inception()  # the clear error first, before reading anything
    sd = None if weights is None else torch.load(str(weights), map_location="cpu", weights_only=True)
    model = torchvision_feature_net(sd)
    scripted = torch.jit.trace(model, torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        scripted.save(str(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m ipvgkit.faces.inception export OUT.pt`` (same as ``ipvg models export-inception -o OUT.pt``)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "export":
        print("usage: python -m ipvgkit.faces.inception export OUT.pt", file=sys.stderr)
        return 2
    print(export_torchvision_inception(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
