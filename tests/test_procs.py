from __future__ import annotations

import sys
import threading

from ipvgkit.procs import pool_context, spawnable_main, thread_count


def test_pool_context_spawns_when_other_threads_run():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert thread_count() >= 2
        assert pool_context().get_start_method() == "spawn"
    finally:
        stop.set()
        t.join()


def test_spawnable_main_hides_a_main_file_that_does_not_exist(monkeypatch):
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__file__", "/nonexistent/<stdin>", raising=False)
    with spawnable_main():
        assert not hasattr(main, "__file__")
    assert main.__file__ == "/nonexistent/<stdin>"


def test_available_cpus_follows_the_affinity_mask():
    import os

    from ipvgkit.procs import available_cpus

    n = available_cpus()
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n == len(os.sched_getaffinity(0))
