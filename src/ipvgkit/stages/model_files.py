"""The listing behind ``ipvg models``: every registered weight file, where it was looked for, present or not.

Modules register their files (``ipvgkit.weights.register_file``) when imported; :func:`load_registrations`
imports every ipvgkit module whose source calls ``register_file(`` (metric modules, ``ipvgkit.faces``,
model backends). Those modules are cheap to import by convention (no torch at import time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import ipvgkit
from ipvgkit.errors import CheckFailed, UsageError
from ipvgkit.paths import models_dir as resolve_models_dir
from ipvgkit.weights import REGISTRY, ModelFile, find


@dataclass
class ModelsConfig:
    """Options of ``ipvg models``: the models dir and the names (files or their users) that must be present."""

    models_dir: Path | None = None
    require: list[str] = field(default_factory=list)


@dataclass
class FileStatus:
    """One registered file and what the search found."""

    name: str
    relpath: str
    used_by: list[str]
    present: bool
    path: str | None
    searched: list[str]
    source: str
    description: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "relpath": self.relpath,
            "used_by": self.used_by,
            "present": self.present,
            "path": self.path,
            "searched": self.searched,
            "source": self.source,
            "description": self.description,
        }


def registering_modules() -> list[str]:
    """Dotted names of the ipvgkit modules whose source registers weight files."""
    root = Path(ipvgkit.__file__).parent
    names = []
    for py in sorted(root.rglob("*.py")):
        if (py.parent == root and py.name == "weights.py") or py == Path(__file__):
            continue
        try:
            text = py.read_text(encoding="utf-8")
        except OSError:
            continue
        if "register_file(" not in text:
            continue
        parts = list(py.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def load_registrations() -> list[str]:
    """Import every registering module; returns one line per module that failed to import."""
    import importlib

    problems = []
    try:
        from ipvgkit.metrics import load_all

        load_all()
    except Exception as e:  # noqa: BLE001 - report, keep listing the other files
        problems.append(f"ipvgkit.metrics: {type(e).__name__}: {e}")
    for mod in registering_modules():
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - a broken optional module must not hide the others' files
            problems.append(f"{mod}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return problems


def status_of(mf: ModelFile, models_dir: Path | None) -> FileStatus:
    """Where ``mf`` was looked for and whether it was found."""
    path, searched = find(mf, models_dir)
    return FileStatus(
        name=mf.name,
        relpath=mf.relpath,
        used_by=list(mf.used_by),
        present=path is not None,
        path=str(path) if path is not None else None,
        searched=searched,
        source=mf.source,
        description=mf.description,
    )


def list_models(cfg: ModelsConfig) -> tuple[list[FileStatus], list[str]]:
    """(status of every registered file sorted by name, import problems); checks ``cfg.require``.

    ``require`` names files (``buffalo_l``), their users (``facesim_arc``: every file it uses) or presets.
    An unknown name is a UsageError; a required file that is missing raises CheckFailed listing them.
    """
    problems = load_registrations()
    rows = [status_of(REGISTRY[n], cfg.models_dir) for n in sorted(REGISTRY)]
    if cfg.require:
        missing = [r for r in resolve_names(cfg.require, rows).values() if not r.present]
        if missing:
            raise CheckFailed(
                f"{len(missing)} required model file(s) missing in {resolve_models_dir(cfg.models_dir)}",
                [f"{r.name} ({r.relpath}): get it from {r.source}" for r in missing],
            )
    return rows, problems


def resolve_names(names: list[str], rows: list[FileStatus]) -> dict[str, FileStatus]:
    """The files meant by ``names``: presets (their metrics), metric/backend names (the files they use)
    or file names. An unknown name is a UsageError listing the known ones."""
    from ipvgkit.metrics.presets import PRESETS

    wanted: dict[str, FileStatus] = {}
    unknown = []
    for name in names:
        users = PRESETS.get(name, [name])
        hits = [r for r in rows if r.name == name or any(u in r.used_by for u in users)]
        if not hits:
            unknown.append(name)
        wanted.update({r.name: r for r in hits})
    if unknown:
        known = sorted({r.name for r in rows} | {u for r in rows for u in r.used_by} | set(PRESETS))
        raise UsageError(
            f"unknown model file or user {', '.join(unknown)} (a preset, metric, backend or file; known: {', '.join(known)})"
        )
    return wanted
