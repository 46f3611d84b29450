"""Model files: what each metric/backend needs, where it is looked for, and where to get it.

Every metric or backend module declares its files as :class:`ModelFile` objects and registers them
with :func:`register_file` when the module is imported, so ``ipvg models`` can list them all.

Search order for a file (never a download):

1. the models directory: the ``models_dir`` argument, else ``ipvgkit.paths.models_dir()``
   (``$IPVG_MODELS``, else ``~/.cache/ipvg/models``), at ``<models_dir>/<relpath>``, then at each of
   ``alt_relpaths`` (other names the same file is published under);
2. extra local folders a ModelFile names in ``extra_paths`` (e.g. ``~/.insightface/models/buffalo_l``);
3. the Hugging Face hub cache, when ``hf_repo`` is set:
   ``<hf_cache>/models--{org}--{name}/snapshots/*/{hf_path}`` (``hf_path == ""``: the snapshot itself).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ipvgkit.errors import MissingWeightsError
from ipvgkit.paths import hf_cache_dir
from ipvgkit.paths import models_dir as resolve_models_dir


@dataclass(frozen=True)
class ModelFile:
    """One weight file or folder a metric/backend needs."""

    name: str  # stable id, e.g. "buffalo_l"
    relpath: str  # file or folder inside the models dir, e.g. "insightface/buffalo_l"
    source: str  # where to get it: human text with URL / hub id / command
    hf_repo: str | None = None  # hub repo id also looked for in the HF cache
    hf_path: str | None = None  # file/folder inside that repo snapshot ("" = the snapshot itself)
    description: str = ""
    used_by: tuple[str, ...] = ()  # metric/backend names
    extra_paths: tuple[str, ...] = ()  # other local places (``~`` expanded), searched after the models dir
    # other names of the same file inside the models dir (e.g. OpenS2V's ``aesthetic-model.pth`` for
    # LAION's aesthetic MLP), searched right after ``relpath``
    alt_relpaths: tuple[str, ...] = ()


REGISTRY: dict[str, ModelFile] = {}


def register_file(mf: ModelFile) -> ModelFile:
    """Add ``mf`` to :data:`REGISTRY` (merging ``used_by`` when the same name is registered again)."""
    old = REGISTRY.get(mf.name)
    if old is not None and old != mf:
        merged = tuple(dict.fromkeys(old.used_by + mf.used_by))
        mf = replace(mf, used_by=merged)
    REGISTRY[mf.name] = mf
    return mf


def _exists(p: Path) -> bool:
    """A file that exists, or a folder that is not empty."""
    if p.is_file():
        return True
    return p.is_dir() and any(p.iterdir())


def _hf_candidates(mf: ModelFile) -> tuple[str | None, list[Path]]:
    """The HF-cache pattern searched (for messages) and the existing snapshot paths, newest first."""
    if not mf.hf_repo:
        return None, []
    repo_dir = hf_cache_dir() / ("models--" + mf.hf_repo.replace("/", "--"))
    sub = mf.hf_path or ""
    pattern = str(repo_dir / "snapshots" / "*" / sub) if sub else str(repo_dir / "snapshots" / "*")
    snaps = repo_dir / "snapshots"
    if not snaps.is_dir():
        return pattern, []
    found = []
    for snap in sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        cand = snap / sub if sub else snap
        if _exists(cand):
            found.append(cand)
    return pattern, found


def find(mf: ModelFile, models_dir: Path | str | None = None) -> tuple[Path | None, list[str]]:
    """Look for ``mf``: returns (the first existing path or None, every place searched in order)."""
    searched: list[str] = []
    root = resolve_models_dir(models_dir)
    for rel in (mf.relpath, *mf.alt_relpaths):
        p = root / rel
        searched.append(str(p))
        if _exists(p):
            return p, searched
    for extra in mf.extra_paths:
        p = Path(extra).expanduser()
        searched.append(str(p))
        if _exists(p):
            return p, searched
    pattern, found = _hf_candidates(mf)
    if pattern is not None:
        searched.append(f"HF cache {pattern}")
        if found:
            return found[0], searched
    return None, searched


def locate(mf: ModelFile, models_dir: Path | str | None = None) -> Path:
    """The path of ``mf``; raises :class:`MissingWeightsError` naming the file, the places and the source."""
    path, searched = find(mf, models_dir)
    if path is None:
        raise MissingWeightsError(mf.relpath, searched, mf.source)
    return path


def get_file(name: str) -> ModelFile:
    """A registered ModelFile by name (KeyError listing the known names otherwise)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model file {name!r} (known: {', '.join(sorted(REGISTRY))})") from None
