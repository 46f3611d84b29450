"""Fixtures of the faces tests: a models dir holding a tiny insightface pack (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_models import make_pack


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    make_pack(root / "insightface" / "buffalo_l")
    return root
