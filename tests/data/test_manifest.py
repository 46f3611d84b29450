import json
import os
import subprocess
import sys

import pytest

from ipvgkit.data.manifest import (
    JournalWriter,
    ManifestEvent,
    Sample,
    read_journal,
    read_manifest,
    sample_id,
    write_manifest,
)
from ipvgkit.errors import InputError


def _sample(i: int, **kw) -> Sample:
    sid = sample_id("vip200k", f"vid{i}", 10 * i, 10 * i + 30)
    base = dict(
        sample_id=sid, source="vip200k", identity_id=f"p{i}", video=f"vid{i}.mp4", frame_start=10 * i,
        frame_end=10 * i + 30, fps=30.0, t_start=i / 3, t_end=i / 3 + 1, caption="a person",
    )  # fmt: skip
    base.update(kw)
    return Sample(**base)


def test_sample_id_is_stable_and_depends_on_every_part():
    a = sample_id("vip200k", "abc/def", 1, 5)
    assert a == sample_id("vip200k", "abc/def", 1, 5)
    assert "/" not in a
    assert len({a, sample_id("reactid", "abc/def", 1, 5), sample_id("vip200k", "abc", 1, 5),
                sample_id("vip200k", "abc/def", 2, 5), sample_id("vip200k", "abc/def", 1, 6)}) == 5  # fmt: skip


def test_manifest_round_trip_sorted(tmp_path):
    samples = [_sample(2, events=[ManifestEvent(0.0, 0.5, "walks")]), _sample(1, ref_images=["refs/a.png"])]
    write_manifest(tmp_path, samples)
    back = read_manifest(tmp_path, source="vip200k")
    assert [s.sample_id for s in back] == sorted(s.sample_id for s in samples)
    assert {s.sample_id: s for s in back}[samples[0].sample_id].events == [ManifestEvent(0.0, 0.5, "walks")]
    assert back[0].duration == pytest.approx(1.0)


def test_manifest_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="no manifest"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, [_sample(1)])
    with pytest.raises(InputError, match="not 'reactid'"):
        read_manifest(tmp_path, source="reactid")
    rec = json.loads((tmp_path / "manifest.jsonl").read_text())
    rec["schema"] = 99
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(InputError, match="schema 99"):
        read_manifest(tmp_path)
    rec["schema"] = 1
    rec["bogus"] = 1
    (tmp_path / "manifest.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(InputError, match="unknown field 'bogus'"):
        read_manifest(tmp_path)


def test_journal_survives_a_torn_tail(tmp_path):
    path = tmp_path / "journal.jsonl"
    with JournalWriter(path) as j:
        j.append(_sample(1))
        j.append({"kind": "reject", "reason": "missing"})
    with path.open("ab") as f:
        f.write(b'{"kind": "half')  # what a kill -9 mid-write leaves
    assert len(list(read_journal(path))) == 2
    with JournalWriter(path) as j:  # reopening cuts the torn line
        j.append({"kind": "x"})
    assert [r.get("kind") for r in read_journal(path)] == [None, "reject", "x"]


def test_journal_two_processes_append_whole_lines(tmp_path):
    path = tmp_path / "journal.jsonl"
    code = (
        "import sys; from ipvgkit.data.manifest import JournalWriter\n"
        "j = JournalWriter(sys.argv[1])\n"
        "[j.append({'w': sys.argv[2], 'i': i, 'pad': 'x' * 500}) for i in range(200)]\n"
    )
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), w], env=env) for w in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    recs = list(read_journal(path))
    assert len(recs) == 400
    assert sorted((r["w"], r["i"]) for r in recs) == sorted((w, i) for w in "ab" for i in range(200))
