"""Bookkeeping files that ipvg stages keep beside the videos of an output folder, declared once.

The stage that writes such a file takes its name from here, and ``ipvg pack`` leaves these files out of
the zip with a note (so that an ``ipvg generate`` output folder or an ``ipvg score --select BEST``
folder packs as it is); inside a zip they are problems. Only names at the top of the folder count.
"""

from __future__ import annotations

import re

GENERATE_CONFIG = "generate.yaml"  # ipvg generate: the resolved config
GENERATE_LOG = "generation.jsonl"  # ipvg generate: one JSON line per case
GENERATE_RANK_LOG = "generation.rank{rank}.jsonl"  # ... per rank when several share the folder
SELECTION = "selection.json"  # ipvg score --select: the choice per case (older versions: inside BEST)
CLAIM_SUFFIX = ".claim"  # ipvg generate: ``.<video name>.claim`` while a process works on that video

_RANK = re.escape(GENERATE_RANK_LOG).replace(re.escape("{rank}"), r"\d+")
KNOWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(f"{re.escape(GENERATE_CONFIG)}|{re.escape(GENERATE_LOG)}|{_RANK}"), "ipvg generate"),
    (re.compile(re.escape(SELECTION)), "ipvg score --select"),
)


def written_by(rel: str) -> str | None:
    """The command whose bookkeeping file ``rel`` (relative to the output folder) is, or None."""
    for pattern, command in KNOWN:
        if pattern.fullmatch(rel):
            return command
    return None


def claim_name(video_name: str) -> str:
    """The claim file of a video (``.1.mp4.claim`` for ``1.mp4``), beside it."""
    return f".{video_name}{CLAIM_SUFFIX}"


def claimed_video(rel: str) -> str | None:
    """The video (relative path) whose claim file ``rel`` is, or None."""
    head, _, name = rel.rpartition("/")
    if not (name.startswith(".") and name.endswith(CLAIM_SUFFIX)) or len(name) <= len(CLAIM_SUFFIX) + 1:
        return None
    video = name[1 : -len(CLAIM_SUFFIX)]
    return f"{head}/{video}" if head else video


def generate_log_name(rank: int | None) -> str:
    """``generation.jsonl``, or ``generation.rank{R}.jsonl`` (0-based ``rank``) when sharded."""
    return GENERATE_LOG if rank is None else GENERATE_RANK_LOG.format(rank=rank)
