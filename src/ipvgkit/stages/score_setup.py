"""Metric setup of ``ipvg score``: which metrics a config asks for, their instances with the preset's
options, the check that every model file exists (before any video is read), and the resume signature."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ipvgkit.errors import MissingWeightsError, UsageError
from ipvgkit.metrics.base import Metric

DEFAULT_PRESET = "consisid"


def resolve_metric_names(preset: str | None, metrics: list[str]) -> tuple[str | None, list[str]]:
    """(preset or None, metric names) chosen by a config; unknown names raise UsageError.

    A metric list wins over no preset; neither given means the ``consisid`` preset.
    """
    from ipvgkit.metrics import known_metrics
    from ipvgkit.metrics.presets import preset_metrics

    if metrics:
        names = list(dict.fromkeys(m.strip() for m in metrics if m.strip()))
        known = known_metrics()
        bad = [n for n in names if n not in known]
        if bad:
            raise UsageError(f"unknown metric {bad[0]!r} (known: {', '.join(known)})")
        return None, names
    preset = preset or DEFAULT_PRESET
    return preset, preset_metrics(preset)


def build_metrics(preset: str | None, names: list[str]) -> list[Metric]:
    """Metric instances with the preset's options (e.g. opens2v's 32-frame FaceSim-Cur)."""
    from ipvgkit.metrics import get_metric
    from ipvgkit.metrics.presets import PRESET_OPTIONS

    opts = PRESET_OPTIONS.get(preset or "", {})
    return [get_metric(n, **opts.get(n, {})) for n in names]


def check_weights(metrics: list[Metric], models_dir: Path | None) -> None:
    """Raise :class:`MissingWeightsError` for the first missing model file of any metric (all checked)."""
    from ipvgkit.weights import find

    missing = []
    for m in metrics:
        for mf in m.model_files():
            path, searched = find(mf, models_dir)
            if path is None:
                missing.append((m.name, mf, searched))
    if missing:
        name, mf, searched = missing[0]
        others = sorted({f"{mf2.relpath} ({n})" for n, mf2, _ in missing[1:] if mf2.relpath != mf.relpath})
        label = f"{mf.relpath} (needed by {name}" + (f"; also missing: {', '.join(others)}" if others else "")
        raise MissingWeightsError(label + ")", searched, mf.source)


def signature(preset: str | None, metrics: list[Metric], bgr_quirk: bool, models_dir: Any = None) -> str:
    """A short hash of everything that changes the numbers: metric names, their options (``auto``
    choices as resolved here, :meth:`Metric.resolved_options`), options."""
    data = {
        "metrics": {m.name: m.resolved_options(models_dir) for m in metrics},
        "bgr_quirk": bool(bgr_quirk),
    }
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
