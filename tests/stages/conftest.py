"""Fixtures shared by the stage tests (the finetune modules use them through ``pytestmark``)."""

from __future__ import annotations

import pytest
import torch

from .finetune_prep import make_prep


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module (the suite runs two workers on two cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Where the tiny models are written (once per module)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    """The default small prepare folder (modules needing events, faces or more samples override it)."""
    return make_prep(tmp_path_factory.mktemp("prep"))
