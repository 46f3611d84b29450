"""``ipvg prepare stats``: what a prepared folder holds (from its manifest, rejects and run record)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ipvgkit.data.manifest import REJECTS_NAME, read_journal, read_manifest


def _spread(values: list[float], digits: int = 3) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        k: round(float(f(a)), digits) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
    }


def prepare_stats(folder: Path) -> dict[str, Any]:
    """Counts, durations, resolutions, buckets, rejects by reason, identities, caption lengths."""
    folder = Path(folder)
    samples = read_manifest(folder)
    rejects = list(read_journal(folder / REJECTS_NAME))
    durations = [s.duration for s in samples]
    record = folder / "prepare.json"
    run = json.loads(record.read_text()) if record.is_file() else {}
    return {
        "folder": str(folder),
        "source": samples[0].source if samples else run.get("source"),
        "samples": len(samples),
        "rejected": len(rejects),
        "rejects_by_reason": dict(sorted(Counter(r.get("reason", "?") for r in rejects).items())),
        "identities": len({s.identity_id for s in samples}),
        "videos": len({s.video for s in samples}),
        "hours": round(sum(durations) / 3600, 4),
        "duration_s": _spread(durations),
        "resolutions": dict(Counter(f"{s.width}x{s.height}" for s in samples).most_common()),
        "buckets": dict(
            Counter(
                f"{b['height']}x{b['width']}x{b['frames']}" for s in samples if (b := s.bucket)
            ).most_common()
        ),
        "caption_words": _spread([len(s.caption.split()) for s in samples], 1),
        "ref_same_segment": sum(1 for s in samples if s.ref_same_segment),
        "with_face_embedding": sum(1 for s in samples if s.face_embedding),
        "with_events": sum(1 for s in samples if s.events),
        "events_units": dict(Counter(s.events_units for s in samples if s.events_units)),
        "cached": dict(Counter(k for s in samples for k in s.cache)),
        "face_backend": run.get("face_backend"),
    }
