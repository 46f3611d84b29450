"""The metric registry: ``@register`` on a :class:`~ipvgkit.metrics.base.Metric` subclass, lookup by name."""

from __future__ import annotations

from typing import TypeVar

from ipvgkit.errors import UsageError
from ipvgkit.metrics.base import Metric

METRICS: dict[str, type[Metric]] = {}

M = TypeVar("M", bound=type[Metric])


def register(cls: M) -> M:
    """Class decorator: make the metric available under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__}: a metric needs a non-empty class attribute 'name'")
    other = METRICS.get(name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise TypeError(
            f"metric name {name!r} is registered twice ({other.__qualname__}, {cls.__qualname__})"
        )
    METRICS[name] = cls
    return cls


def _ensure_loaded() -> None:
    import ipvgkit.metrics  # noqa: F401 - importing the package registers all built-in metrics

    ipvgkit.metrics.load_all()


def known_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    _ensure_loaded()
    return sorted(METRICS)


def get_metric(name: str, **kwargs) -> Metric:
    """A new instance of the metric ``name`` (kwargs go to its constructor); UsageError on unknown names."""
    _ensure_loaded()
    cls = METRICS.get(name)
    if cls is None:
        raise UsageError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UsageError(f"metric {name!r}: {e}") from None
