from enum import StrEnum
from pathlib import Path

from ipvgkit.cli.options import config_values


class Mode(StrEnum):
    a = "a-b"


def test_config_values_drops_unset_and_converts():
    got = config_values(
        steps=None,
        flag=False,
        on=True,
        mode=Mode.a,
        out=Path("x/y"),
        lora=[Path("l1"), Path("l2")],
        empty=[],
        zero=0,
        sub={"dtype": None, "device": "cpu"},
        nothing={"dtype": None},
    )
    assert got == {
        "on": True,
        "mode": "a-b",
        "out": "x/y",
        "lora": ["l1", "l2"],
        "zero": 0,
        "sub": {"device": "cpu"},
    }
