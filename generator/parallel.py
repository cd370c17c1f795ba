"""Work on many products on every core: this process and forked ones, each a share of them.

A project is a function of its spec and the mesh (its inputs, its readers), and YAML reading and
writing are Python code under the GIL, so threads would not help; processes forked after the mesh
is loaded start with it in memory and send back only text. Results come back in the order of the
items, so the files are the same bytes whichever process rendered them (tests/test_parallel.py).
Specs are loaded the same way (spec/mesh.py), `validate` shares its products out
(cli/fresh_verdicts.py), and `render` judges the products' policies `meanwhile`, in a process of
its own, while this one writes the files. Work already shared out is not shared again: a share
that loads specs loads them in its own process.

Below MIN_PER_PROCESS products a process costs more than it saves; where fork is not available
(Windows, or macOS, where forking a process that loaded system frameworks is unsafe) everything
is rendered here, in order.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

# Measured at 1,000 products on 2 cores: 1.14 s in one process, 0.82 s in two (forking a process
# that holds the mesh, and sending 7,000 files' text back, cost the rest). Below this many
# products a process's share is too small to pay for its start.
MIN_PER_PROCESS = 100

# What the forked processes work on: set just before forking, read by _share (and _background).
# Module state so that only the indices of a share cross the process boundary, not the mesh.
_WORK: tuple[Callable[..., object], Sequence[object]] | None = None
_BACKGROUND: Callable[[], object] | None = None


def processes_for(count: int, per_process: int = MIN_PER_PROCESS) -> int:
    """How many processes to work on `count` products with, each at least `per_process` of them:
    1 (this one) when forking cannot pay, or when this is already a share of some work."""
    if not _can_fork() or _WORK is not None or _BACKGROUND is not None:
        return 1
    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores, count // per_process))


def _can_fork() -> bool:
    import multiprocessing  # here: a DAG task imports this module with the specs, and never forks

    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def _forking(processes: int) -> ProcessPoolExecutor:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Not multiprocessing.Pool: a process killed (out of memory) would leave it waiting forever;
    # the executor raises BrokenProcessPool instead.
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))


@contextmanager
def meanwhile(work: Callable[[], R], count: int) -> Iterator[Callable[[], R]]:
    """`work()` in a forked process while the `with` block runs in this one; the block gets a
    function that waits for work's value (or raises what work raised), as often as it likes.
    `count`: how many products the work is about; below MIN_PER_PROCESS, or where fork is not
    available, a process costs more than it saves, and `work` runs here, the first time its value
    is asked for."""
    if count < MIN_PER_PROCESS or not _can_fork():
        yield functools.cache(work)
        return
    global _BACKGROUND
    _BACKGROUND = work
    try:
        with _forking(1) as pool:
            yield pool.submit(_background).result
    finally:
        _BACKGROUND = None


def map_in_order(render: Callable[[T], R], items: Sequence[T], processes: int) -> list[R]:
    """[render(item) for item in items], with the items shared out among `processes` processes:
    this one and processes-1 forked ones (every processes-th item each). This process's share
    needs no sending back. An exception in any share is raised here (the first share's first)."""
    if processes <= 1 or len(items) < 2:
        return [render(item) for item in items]
    global _WORK
    # Every processes-th item: neighbours cost alike (a product and the next one it reads), so the
    # shares take about as long as each other (contiguous shares differed by 10% at 1,000 products).
    shares = [range(first, len(items), processes) for first in range(min(processes, len(items)))]
    _WORK = (render, items)
    try:
        with _forking(len(shares) - 1) as pool:
            forked = [pool.submit(_share, share) for share in shares[1:]]
            results = [_share(shares[0]), *(future.result() for future in forked)]
    finally:
        _WORK = None
    ordered: list[R] = [None] * len(items)  # type: ignore[list-item]
    for share, found in zip(shares, results, strict=True):
        ordered[share.start:share.stop:share.step] = found  # type: ignore[assignment]
    return ordered


def _background() -> object:
    assert _BACKGROUND is not None, "called outside meanwhile"
    return _BACKGROUND()


def _share(indices: range) -> list[object]:
    assert _WORK is not None, "called outside map_in_order"
    render, items = _WORK
    return [render(items[i]) for i in indices]
