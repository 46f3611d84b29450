"""The engines that run the per-sample function over many specs: a local process pool, or Ray Data.

Both run :func:`ipvgkit.stages.prepare_work.process_spec` unchanged and yield its result dicts as they
finish (any order); the caller journals them. ``local`` keeps at most ``4 x workers`` specs in flight
(memory stays flat on 500k clips); ``ray`` builds a dataset of JSON specs and runs
``map_batches(process_batch)``, on the cluster at ``ray_address`` or on a local Ray it starts and stops.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Literal

from ipvgkit.errors import MissingDependencyError
from ipvgkit.stages.prepare_work import WorkConfig, process_batch, process_spec

Engine = Literal["local", "ray"]
ENGINES = ("local", "ray")
RAY_HINT = "--engine ray needs Ray Data, the `ray` extra: pip install 'ipvgkit[ray]'"


def check_engine(engine: str) -> None:
    """Raise before any work when the engine cannot run here."""
    if engine != "ray":
        return
    try:
        import ray.data  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"{RAY_HINT} ({e})") from None


def run_engine(
    engine: str, specs: list[dict[str, Any]], wcfg: WorkConfig, cfg: Any
) -> Iterator[dict[str, Any]]:
    """Results of ``process_spec`` for every spec (order not kept)."""
    if not specs:
        return iter(())
    if engine == "ray":
        return _ray(specs, wcfg, cfg.workers, cfg.ray_address)
    return _local(specs, wcfg, cfg.workers)


def _local(specs: list[dict[str, Any]], wcfg: WorkConfig, workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(specs) == 1:
        for s in specs:
            yield process_spec(s, wcfg)
        return
    from ipvgkit.procs import pool_context, spawnable_main

    todo = iter(specs)
    with ProcessPoolExecutor(max_workers=min(workers, len(specs)), mp_context=pool_context()) as ex:
        with spawnable_main():
            pending = {
                ex.submit(process_spec, s, wcfg) for _, s in zip(range(4 * workers), todo, strict=False)
            }
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.add(ex.submit(process_spec, nxt, wcfg))


def _ray(
    specs: list[dict[str, Any]], wcfg: WorkConfig, workers: int, address: str | None
) -> Iterator[dict[str, Any]]:
    import logging

    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-dataset INFO lines on the console
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
        started = True
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours is drawn by the caller
        ds = ray.data.from_items([{"spec": json.dumps(s, sort_keys=True)} for s in specs])
        batch = max(1, min(16, len(specs) // (4 * workers) or 1))
        ds = ds.map_batches(process_batch, fn_kwargs={"cfg": wcfg}, batch_size=batch, batch_format="numpy")
        for row in ds.iter_rows():
            yield json.loads(row["result"])
    finally:
        if started:
            ray.shutdown()
