from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from ipvgkit.config import from_dict, parse_overrides, resolve, save, to_dict
from ipvgkit.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-4
    rank: int = 16


@dataclass
class Cfg:
    out: Path = Path("out")
    steps: int = 50
    guidance: float = 5.0
    mode: Literal["masked", "soft", "prompt"] = "masked"
    seed: int | None = None
    tags: list[str] = field(default_factory=list)
    compile: bool = False
    inner: Inner = field(default_factory=Inner)


def test_defaults_file_cli_and_overrides_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 10\nguidance: 3\ninner:\n  rank: 4\n")
    cfg = resolve(
        Cfg, f, {"steps": 20, "seed": None}, ["inner.lr=0.5", "mode=soft", "tags=[a,b]", "compile=true"]
    )
    assert cfg.steps == 20  # CLI beats the file
    assert cfg.guidance == 3.0 and isinstance(cfg.guidance, float)
    assert cfg.inner == Inner(lr=0.5, rank=4)
    assert cfg.mode == "soft"
    assert cfg.tags == ["a", "b"]
    assert cfg.compile is True
    assert cfg.seed is None


def test_set_beats_cli():
    assert resolve(Cfg, None, {"steps": 20}, ["steps=7"]).steps == 7


def test_save_round_trip(tmp_path):
    cfg = Cfg(out=tmp_path / "x", seed=3, tags=["t"], inner=Inner(rank=2))
    path = save(cfg, tmp_path / "cfg.yaml")
    data = yaml.safe_load(path.read_text())
    assert data["out"] == str(tmp_path / "x")
    assert from_dict(Cfg, data) == cfg
    assert to_dict(cfg)["inner"] == {"lr": 1e-4, "rank": 2}


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["nope=1"], "unknown config key 'nope'"),
        (["inner.nope=1"], "unknown config key 'inner.nope'"),
        (["steps=abc"], "expected an integer"),
        (["steps=1.5"], "expected an integer"),
        (["mode=fast"], "not one of"),
        (["compile=maybe"], "true/false"),
        (["steps"], "expected key=value"),
        (["=3"], "empty key"),
    ],
)
def test_bad_overrides_are_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        resolve(Cfg, None, None, overrides)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(Cfg, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve(Cfg, lst)


def test_parse_overrides_nesting():
    assert parse_overrides(["a.b.c=1", "a.d=x", "e="]) == {"a": {"b": {"c": 1}, "d": "x"}, "e": ""}
