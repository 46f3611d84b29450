"""The ``dev`` extra holds every package the test suite imports (issue 8 item 11): a fresh
``pip install -e '.[dev]' && pytest`` finds them all."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# kept optional: torchvision (the test checks the error without it), deepspeed (its launch tests skip)
OPTIONAL_BY_DESIGN = {"torchvision", "deepspeed"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = {_name(r) for r in project["dependencies"]}
    todo = list(extras["dev"])
    while todo:
        req = todo.pop()
        m = re.match(r"ipvgkit\[([^\]]+)\]", req)
        if m:
            todo += [r for extra in m.group(1).split(",") for r in extras[extra.strip()]]
        else:
            names.add(_name(req))
    return names


def _test_imports() -> set[str]:
    mods = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods - set(sys.stdlib_module_names) - {"ipvgkit", "tests"} - OPTIONAL_BY_DESIGN


def test_dev_extra_has_every_test_dependency():
    dists = md.packages_distributions()
    declared = _declared()
    missing = []
    for mod in sorted(_test_imports()):
        owners = {d.lower().replace("_", "-") for d in dists.get(mod, [mod])}
        if not owners & declared:
            missing.append(f"{mod} (from {', '.join(sorted(owners))})")
    assert not missing, f"test imports not in the dev extra or the dependencies: {missing}"
