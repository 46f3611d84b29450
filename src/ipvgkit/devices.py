"""Which torch device a run uses: one resolution for generation backends and metrics.

``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` and ``cuda:N`` must exist; any
other name is a usage error naming the choices. torch is imported only when the answer needs it.
"""

from __future__ import annotations

import re

from ipvgkit.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA = re.compile(r"cuda(:\d+)?")


def check_device_name(device: str) -> None:
    """``UsageError`` unless ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (no torch needed)."""
    if device in ("auto", "cpu") or _CUDA.fullmatch(str(device)):
        return
    raise UsageError(f"unknown device {device!r}; use {', '.join(DEVICE_CHOICES[:-1])} or cuda:N")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda[:N]`` must exist."""
    check_device_name(device)
    if device == "cpu":
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for but no CUDA GPU is visible; use --device cpu or auto")
    return str(device)
