"""Dataset sources for ``ipvg prepare``: one module per dataset behind :class:`base.Source`.

:data:`SOURCES` names each source and its class; a new dataset is one module and one entry here
(plus its CLI command in :mod:`ipvgkit.cli.prepare`).
"""

from __future__ import annotations

from ipvgkit.data.sources.base import REASONS, RefFace, Reject, SampleSpec, Source
from ipvgkit.data.sources.reactid import ReactIdSource
from ipvgkit.data.sources.vip200k import Vip200kSource

SOURCES: dict[str, type] = {"vip200k": Vip200kSource, "reactid": ReactIdSource}

__all__ = [
    "REASONS",
    "SOURCES",
    "ReactIdSource",
    "RefFace",
    "Reject",
    "SampleSpec",
    "Source",
    "Vip200kSource",
]
