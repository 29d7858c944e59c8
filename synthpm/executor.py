"""Where embarrassingly parallel work runs: in this process, in local worker processes, or
on Ray (a local runtime, or a cluster joined by address).

Every parallel stage (walk-forward folds, dataset chunks, compare strategies, sweep cells)
is written as `fn(shared, item)`: `shared` is the large read-only input (the panel, the
market arrays), shipped once per worker (local) or put into Ray's object store once (Ray);
`item` is small (a fold, a chunk of dates, a strategy). `parallel_map` yields the results in
the items' order, whatever order they finish in, so a stage's output does not depend on the
executor: the tests check local and Ray give the same files, bit for bit.

Local workers come from a `forkserver`, not a plain fork: a process that has run LightGBM
(OpenMP) and then forks children that run it again can hang in GCC's OpenMP runtime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import BaseModel, ConfigDict, Field

from synthpm.data.errors import ConfigError

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

RAY_ADDRESS = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        envvar="RAY_ADDRESS",
        show_envvar=True,
        help="join this Ray cluster (host:port or ray://host:port) [default: start a local one]",
    ),
]


class ExecutorConfig(BaseModel):
    """How a stage's independent pieces run; it never changes what they compute."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    executor: Literal["local", "ray"] = Field(
        "local", description="local: this machine's processes; ray: a Ray runtime or cluster"
    )
    workers: int = Field(
        0, ge=0, description="parallel workers: local processes or Ray CPUs (0: one per core)"
    )
    ray_address: RAY_ADDRESS = None

    def count(self) -> int:
        return self.workers or os.cpu_count() or 1


LOCAL = ExecutorConfig(workers=1)  # in this process, one piece after another


def parallel_map(
    fn: Callable[[S, T], R],
    shared: S,
    items: Iterable[T],
    config: ExecutorConfig = LOCAL,
    threads: int = 1,
) -> Iterator[R]:
    """`fn(shared, item)` for every item, yielded in the items' order. `fn` must be a
    module-level function (workers import it by name); results travel back pickled.

    `threads`: the CPU threads one item keeps busy (LightGBM's `num_threads`). Each item
    reserves that many of the workers' CPUs: more threads than cores spin against each
    other in OpenMP (`benchmarks/scale_bench.py` measured it)."""
    items = list(items)
    if config.executor == "ray":
        yield from _on_ray(fn, shared, items, config, threads)
        return
    workers = min(max(1, config.count() // threads), len(items))
    if workers <= 1:  # no items, one, or room for one worker
        for item in items:
            yield fn(shared, item)
    else:
        context = get_context("forkserver")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_hold, initargs=(fn, shared)
        ) as pool:
            yield from pool.map(_call_held, items)


_HELD: tuple[Callable, Any] | None = None  # a local worker's fn and shared input


def _hold(fn: Callable, shared: Any) -> None:
    global _HELD
    _HELD = (fn, shared)


def _call_held(item: Any) -> Any:
    fn, shared = _HELD
    return fn(shared, item)


def _on_ray(
    fn: Callable, shared: Any, items: list, config: ExecutorConfig, threads: int
) -> Iterator:
    try:
        import ray
    except ImportError as missing:
        raise ConfigError(
            "the ray executor needs Ray: pip install 'synthpm[dist]' (or pip install ray)"
        ) from missing
    if not ray.is_initialized():
        if config.ray_address:
            ray.init(address=config.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=config.count(), include_dashboard=False, log_to_driver=False)
    # never more CPUs than the cluster has, or the tasks would wait forever
    cpus = min(threads, max(1, int(ray.cluster_resources().get("CPU", 1))))
    task = ray.remote(num_cpus=cpus)(fn)
    shared_ref = ray.put(shared)  # once; every task reads it from the object store
    pending = [task.remote(shared_ref, item) for item in items]
    for ref in pending:
        yield ray.get(ref)
