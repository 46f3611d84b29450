"""Video metrics (SPEC §4): a registry of :class:`Metric` classes, presets and the weight table.

Importing this package is cheap: metric modules import torch/transformers/cv2 only inside
``load``/``compute``. :func:`load_all` imports every built-in metric module so they register.
"""

from __future__ import annotations

import importlib

from ipvgkit.metrics.base import Metric, MetricContext, MetricResult, VideoSample
from ipvgkit.metrics.registry import METRICS, get_metric, known_metrics, register

# Built-in metric modules (``ipvgkit.metrics.<name>``); each registers its metrics at import.
METRIC_MODULES = ("clip", "motion", "consistency", "timeline", "timeline_contrast", "face")

_loaded = False


def load_all() -> None:
    """Import every built-in metric module (idempotent). A module that is not there yet is skipped."""
    global _loaded
    if _loaded:
        return
    for mod in METRIC_MODULES:
        try:
            importlib.import_module(f"ipvgkit.metrics.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"ipvgkit.metrics.{mod}":
                raise
    _loaded = True


__all__ = [
    "METRICS",
    "Metric",
    "MetricContext",
    "MetricResult",
    "VideoSample",
    "get_metric",
    "known_metrics",
    "load_all",
    "register",
]
