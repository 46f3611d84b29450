"""InceptionV3 2048-d features of face crops (``face_feat_dist`` and ``fid``).

The 2025 code used torchvision's ``inception_v3`` with ImageNet weights and ``fc`` replaced by identity
(with weights, torchvision sets ``transform_input=True``, so the network re-normalises its [0,1] input
internally). Here the model is a TorchScript file of exactly that network (torchvision does not import
beside every torch build); ``python -m ipvgkit.faces.inception export OUT.pt`` writes it on a machine
where torchvision imports (it loads torchvision's ImageNet weights from its own cache/download).
Input: aligned RGB 224 crops, resized to 299x299 (bilinear), scaled to [0,1], no normalisation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ipvgkit.errors import InputError, MissingDependencyError

INPUT_SIZE = 299


def load_inception(path: Path | str, device: str = "cpu"):
    """The TorchScript feature extractor at ``path`` in eval mode on ``device``."""
    import torch

    try:
        model = torch.jit.load(str(path), map_location=device)
    except RuntimeError as e:
        raise InputError(f"{path}: not a TorchScript file ({str(e).splitlines()[0]})") from e
    return model.eval()


def crops_to_tensor(crops_rgb: list[np.ndarray]):
    """(N, 3, 299, 299) float tensor in [0,1] of RGB uint8 crops (bilinear resize, ``align_corners=False``)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.stack(crops_rgb)).permute(0, 3, 1, 2).float() / 255.0
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


class InceptionFeatures:
    """2048-d (or whatever the TorchScript model returns) features of aligned RGB face crops."""

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


def export_torchvision_inception(out: Path | str) -> Path:
    """Write torchvision's ImageNet InceptionV3 with ``fc = Identity`` as TorchScript to ``out``."""
    import torch

    try:
        from torchvision.models import Inception_V3_Weights, inception_v3
    except Exception as e:  # noqa: BLE001 - torchvision fails to import in several ways
        raise MissingDependencyError(f"exporting InceptionV3 needs an importable torchvision ({e})") from e
    model = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)
    model.fc = torch.nn.Identity()
    model.eval()
    scripted = torch.jit.trace(model, torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ipvgkit.fsutil import atomic_path

    with atomic_path(out) as tmp:
        scripted.save(str(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m ipvgkit.faces.inception export OUT.pt``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "export":
        print("usage: python -m ipvgkit.faces.inception export OUT.pt", file=sys.stderr)
        return 2
    print(export_torchvision_inception(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
