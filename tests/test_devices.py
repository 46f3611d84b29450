"""``ipvgkit.devices``: one device resolution for backends and metrics."""

from __future__ import annotations

import pytest

from ipvgkit.devices import check_device_name, resolve_device
from ipvgkit.errors import UsageError


def test_cpu_and_auto():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "mps0", "cuda:x", "cuda:", ""])
def test_unknown_names_are_usage_errors(name):
    with pytest.raises(UsageError, match="unknown device .*; use auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_cuda_must_exist():
    import torch

    if torch.cuda.is_available():
        assert resolve_device("cuda:0") == "cuda:0"
    else:
        with pytest.raises(UsageError, match="no CUDA GPU is visible"):
            resolve_device("cuda:1")


def test_metrics_and_backends_share_it():
    from ipvgkit.metrics import clip, consistency, face  # noqa: F401 - they import the one helper
    from ipvgkit.models import runtime

    assert runtime.resolve_device is resolve_device and face.resolve_device is resolve_device
    assert clip.resolve_device is resolve_device


def test_names_are_checked_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from ipvgkit.devices import check_device_name, resolve_device\n"
        "check_device_name('cuda:3'); assert resolve_device('cpu') == 'cpu'\n"
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        check_device_name("tpu")
