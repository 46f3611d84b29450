"""``ipvg models fetch``: download the missing model files of a preset or metric with ``huggingface_hub``.

Only on request, never at import or while scoring. Each registered file with a hub repo is downloaded
into the models dir at :attr:`ipvgkit.weights.ModelFile.fetch_relpath` (for ConsisID's repo that is
ConsisID's own checkpoint layout, ``face_encoder/...``; a whole repo such as CLIP goes to its
``relpath``), where the normal search finds it (a file whose hub path the search does not know is
moved to its ``relpath`` once complete). ``huggingface_hub`` resumes interrupted downloads (its
``.incomplete`` files under ``<models dir>/.cache/huggingface``) and draws a progress bar per file.
``HF_ENDPOINT`` selects the hub (a mirror, or a test server). Files without a hub repo (e.g. the
InceptionV3 TorchScript export) are reported with where to get them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ipvgkit.errors import CheckFailed, InputError
from ipvgkit.paths import models_dir as resolve_models_dir
from ipvgkit.progress import Progress, ensure
from ipvgkit.stages.model_files import ModelsConfig, list_models, resolve_names
from ipvgkit.weights import REGISTRY, ModelFile, find


@dataclass
class FetchConfig:
    """Options of ``ipvg models fetch``: what to fetch (presets, metrics, files) and where."""

    names: list[str] = field(default_factory=list)
    models_dir: Path | None = None
    revision: str | None = None  # hub revision (default: each repo's main)


@dataclass
class FetchResult:
    """What a fetch did: files downloaded (name -> path), already present, and not fetchable."""

    fetched: dict[str, str] = field(default_factory=dict)
    present: dict[str, str] = field(default_factory=dict)
    not_on_hub: dict[str, str] = field(default_factory=dict)  # name -> where to get it

    def to_dict(self) -> dict:
        return {"fetched": self.fetched, "present": self.present, "not_on_hub": self.not_on_hub}


class OfflineError(InputError):
    """The hub cannot be reached from this machine."""


def _is_connection_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled | LocalEntryNotFoundError):
        return True
    try:
        import httpx

        return isinstance(exc, httpx.TransportError)
    except ImportError:  # pragma: no cover - huggingface_hub depends on httpx
        return False


def _download(mf: ModelFile, root: Path, revision: str | None) -> Path:
    """One file or folder from its hub repo into ``root / mf.fetch_relpath`` (resumable, progress bars)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    endpoint = os.environ.get("HF_ENDPOINT") or None
    target = root / mf.fetch_relpath
    if mf.hf_path and not mf.hf_patterns and Path(mf.hf_path).suffix:
        got = hf_hub_download(mf.hf_repo, mf.hf_path, revision=revision, local_dir=root, endpoint=endpoint)
        return Path(got)
    prefix = f"{mf.hf_path}/" if mf.hf_path else ""
    patterns = [prefix + p for p in (mf.hf_patterns or ("*",))]
    local_dir = root if mf.hf_path else target
    snapshot_download(
        mf.hf_repo, revision=revision, local_dir=local_dir, allow_patterns=patterns, endpoint=endpoint
    )
    return target


def _reason(exc: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message (one line, at most ``limit`` characters)."""
    text = (str(exc).splitlines() or [""])[0].strip() or type(exc).__name__
    first = text.split(". ")[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _offline_message(mf: ModelFile, names: list[str], root: Path, exc: BaseException) -> str:
    return (
        f"cannot reach the Hugging Face hub for {mf.name} ({mf.hf_repo}: {_reason(exc)}); on a machine "
        f"with internet run `ipvg models fetch {' '.join(names)} --models-dir DIR` and copy DIR to {root}"
    )


def fetch_models(cfg: FetchConfig, progress: Progress | None = None) -> FetchResult:
    """Download what ``cfg.names`` need and is missing. Raises OfflineError (one line, naming the command
    to run elsewhere) when the hub is unreachable, CheckFailed when some files could not be fetched."""
    progress = ensure(progress)
    rows, _ = list_models(ModelsConfig(models_dir=cfg.models_dir))
    wanted = resolve_names(cfg.names, rows)
    root = resolve_models_dir(cfg.models_dir)
    result, problems = FetchResult(), []
    todo = []
    for name, row in sorted(wanted.items()):
        mf = REGISTRY[name]
        if row.present:
            result.present[name] = row.path or ""
        elif not mf.hf_repo:
            result.not_on_hub[name] = mf.source
            problems.append(f"{name} ({mf.relpath}) is not on the hub: get it from {mf.source}")
        else:
            todo.append(mf)
    progress.phase("fetch model files", total=len(todo))
    for mf in todo:
        progress.status(f"{mf.name} from {mf.hf_repo}")
        try:
            got = _download(mf, root, cfg.revision)
        except Exception as e:  # noqa: BLE001 - hub errors come in many types; each is one line
            if _is_connection_error(e):
                raise OfflineError(_offline_message(mf, cfg.names, root, e)) from None
            problems.append(
                f"{mf.name}: {mf.hf_repo}/{mf.hf_path or ''} could not be fetched ({_reason(e, 200)})"
            )
            continue
        path, _ = find(mf, root)
        if path is None and got.exists():  # a hub path the search does not know: move it to relpath
            path = root / mf.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, path)
        if path is None:
            problems.append(f"{mf.name}: downloaded, but nothing at {root / mf.fetch_relpath}")
        else:
            result.fetched[mf.name] = str(path)
            progress.log(f"fetched {mf.name} -> {path}")
        progress.advance()
    if problems:
        raise CheckFailed(f"{len(problems)} model file(s) not fetched into {root}", problems)
    return result
