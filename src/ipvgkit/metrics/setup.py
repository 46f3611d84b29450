"""What a scoring run used, said out loud: the model files found, the recorded settings (the flow that
ran and why RAFT was substituted), and how the total was made (rule, weights, absent terms)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipvgkit.metrics.base import Metric


def files_used(metrics: list[Metric], models_dir: Path | str | None) -> dict[str, dict[str, str | None]]:
    """Per metric, each model file's name -> the path it was found at (None when absent)."""
    from ipvgkit.weights import find

    out: dict[str, dict[str, str | None]] = {}
    for m in metrics:
        files = {}
        for mf in m.model_files():
            path, _ = find(mf, models_dir)
            files[mf.name] = str(path) if path is not None else None
        if files:
            out[m.name] = files
    return out


def _fmt_weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{k} {w:.3f}" for k, w in weights.items()) or "none"


def setup_lines(summary: dict) -> list[str]:
    """Lines for the end of ``ipvg score``'s table (80-column friendly: one fact per line)."""
    lines = []
    for metric, files in (summary.get("model_files") or {}).items():
        for name, path in files.items():
            lines.append(f"{metric}: {name} = {path or 'not found'}")
    for metric, entry in (summary.get("metrics") or {}).items():
        for key, values in (entry.get("recorded") or {}).items():
            lines.append(f"{metric}: {key} = {'; '.join(values)}")
    detail = summary.get("total_detail") or {}
    if detail:
        kind = "partial total" if detail.get("partial") else "total"
        lines.append(f"{kind}: {detail.get('rule')} ({detail.get('source')})")
        lines.append(f"  weights used: {_fmt_weights(detail.get('weights') or {})}")
        if detail.get("absent"):
            lines.append(f"  absent terms: {', '.join(detail['absent'])}")
    return lines
