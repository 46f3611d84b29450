"""Which torch device a run uses: one resolution for generation backends and metrics.

``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` and ``cuda:N`` must exist; any
other name is a usage error naming the choices. torch is imported only when the answer needs it.
"""

from __future__ import annotations

import re

from ipvgkit.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA = re.compile(r"cuda(:\d+)?")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda[:N]`` must exist."""
    device = str(device)
    if device == "cpu":
        return "cpu"
    if device != "auto" and not _CUDA.fullmatch(device):
        raise UsageError(f"unknown device {device!r}; use {', '.join(DEVICE_CHOICES[:-1])} or cuda:N")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for but no CUDA GPU is visible; use --device cpu or auto")
    return device
