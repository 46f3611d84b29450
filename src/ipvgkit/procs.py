"""Process pools that are safe to start from any caller.

``fork`` starts workers in milliseconds, but forking a process that runs other threads (torch/OpenMP
pools, a rich progress-bar refresh thread, a background encoder) can leave a lock held forever in the
child: we saw such a deadlock in CI. :func:`pool_context` forks only a single-threaded process and
spawns otherwise; :func:`spawnable_main` lets spawned workers start under ``python -`` scripts and
notebooks, whose ``__main__`` names no file.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterator


def thread_count() -> int:
    """Threads of this process, native ones included (Linux ``/proc``); a large number elsewhere."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1 << 16


def pool_context():
    """``fork`` when this process is single-threaded and fork exists, else ``spawn``."""
    if "fork" in multiprocessing.get_all_start_methods() and thread_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def spawnable_main() -> Iterator[None]:
    """Hide ``__main__.__file__`` while workers start when it names no file (``python -``: ``<stdin>``);
    spawned children would otherwise try to re-run it and die."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    hide = path is not None and not os.path.isfile(path)
    if hide:
        del main.__file__
    try:
        yield
    finally:
        if hide:
            main.__file__ = path


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux, else the CPU count): the default
    number of worker processes or threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
