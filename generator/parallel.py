"""Work on many products on every core: this process and forked ones, each a share of them.

A project is a function of its spec and the mesh (its inputs, its readers), and YAML reading and
writing are Python code under the GIL, so threads would not help; processes forked after the mesh
is loaded start with it in memory and send back only text. Results come back in the order of the
items, so the files are the same bytes whichever process rendered them (tests/test_parallel.py).
Specs are loaded the same way (spec/mesh.py), `validate` shares its products out
(cli/fresh_verdicts.py), `render` judges the products' policies `meanwhile`, in a process of its
own, and the rendered files are written by this process and a forked one (render/write.py). Work
already shared out is not shared again: a share that loads specs loads them in its own process.

Below MIN_PER_PROCESS products a process costs more than it saves; where fork is not available
(Windows, or macOS, where forking a process that loaded system frameworks is unsafe) everything
is rendered here, in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")
R = TypeVar("R")

# Measured at 1,000 products on 2 cores: 1.14 s in one process, 0.82 s in two (forking a process
# that holds the mesh, and sending 7,000 files' text back, cost the rest). Below this many
# products a process's share is too small to pay for its start.
MIN_PER_PROCESS = 100

# What the forked processes work on: set just before forking, read by _share. Module state so that
# only the indices of a share cross the process boundary, not the mesh.
_WORK: tuple[Callable[..., object], Sequence[object]] | None = None
_IN_BACKGROUND = False  # whether this is the process `meanwhile` forked


def processes_for(count: int, per_process: int = MIN_PER_PROCESS) -> int:
    """How many processes to work on `count` products with, each at least `per_process` of them:
    1 (this one) when forking cannot pay, or when this is already a share of some work."""
    if not _can_fork() or _WORK is not None or _IN_BACKGROUND:
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
    is asked for. The block may share out work of its own (map_in_order): the process is forked
    directly, not through an executor, so that this one has no threads when the block forks
    again. Leaving the block without asking for the value ends the process."""
    if count < MIN_PER_PROCESS or not _can_fork():
        yield functools.cache(work)
        return
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the forked process: never returns
        os.close(reading)
        _work_in_background(work, writing)
    os.close(writing)
    forked = _Forked(pid, reading)
    try:
        yield forked.value  # type: ignore[misc]
    finally:
        forked.end()


class _Forked:
    """The process `meanwhile` forked, and what came of its work once received."""

    def __init__(self, pid: int, reading: int) -> None:
        self.pid, self.reading = pid, reading
        self.outcome: tuple[bool, Any] | None = None

    def value(self) -> Any:
        if self.outcome is None:
            self.outcome = _outcome(self.pid, self.reading)
        done, value = self.outcome
        if not done:
            raise value
        return value

    def end(self) -> None:
        """Without its outcome received, the value is not wanted: end the process."""
        if self.outcome is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self.reading)


def _work_in_background(work: Callable[[], object], writing: int) -> NoReturn:
    """Run `work` and send what came of it through `writing`; leave at once (os._exit), without
    the exit handlers or buffered output this process inherited."""
    import pickle

    global _IN_BACKGROUND
    _IN_BACKGROUND = True
    status = 1
    try:
        try:
            outcome: tuple[bool, object] = (True, work())
        except BaseException as error:  # noqa: BLE001 - every failure goes back to the caller
            outcome = (False, error)
        try:
            sent = pickle.dumps(outcome)
        except Exception as error:  # noqa: BLE001 - a value or an error pickle cannot send
            sent = pickle.dumps((False, RuntimeError(f"{outcome[1]!r} (could not be sent back: {error})")))
        with os.fdopen(writing, "wb") as pipe:
            pipe.write(sent)
        status = 0
    finally:
        os._exit(status)


def _outcome(pid: int, reading: int) -> tuple[bool, Any]:
    """(True, value) or (False, error) from the background process, once it has sent it and ended."""
    import pickle

    with os.fdopen(reading, "rb") as pipe:
        sent = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not sent:  # killed (out of memory?) before it could say anything
        return False, ChildProcessError(f"the background process {pid} ended without a result ({_ended(status)})")
    return pickle.loads(sent)  # type: ignore[no-any-return]


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


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


def _share(indices: range) -> list[object]:
    assert _WORK is not None, "called outside map_in_order"
    render, items = _WORK
    return [render(items[i]) for i in indices]
