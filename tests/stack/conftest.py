"""The stack suite: one real Airflow stack (harness.py) for the session, stopped with everything
it started. Run with `make test-stack` (`pytest -m stack tests/stack`); `make test` leaves it out."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack.harness import TIMINGS, Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    started = time.monotonic()
    # Not pytest's tmp_path: pytest deletes all but its 3 newest basetemp folders when a session
    # starts, so any other pytest run on the machine would pull the data folder from under the
    # running PostgreSQL. Kept after a failure (its logs), removed after a pass.
    root = Path(tempfile.mkdtemp(prefix="datamesh-stack-"))
    running = Stack(root)
    try:
        running.start()
        TIMINGS.update({f"start: {k}": v for k, v in running.timings.items()})
        yield running
    finally:
        failed = request.session.testsfailed > 0 or not running.timings.get("healthy")
        if failed:
            print(f"\n----- stack logs (all in {running.logs}) -----\n{running.logs_tail()}")
        stop_started = time.monotonic()
        running.stop()
        TIMINGS["stop"] = time.monotonic() - stop_started
        TIMINGS["stack total"] = time.monotonic() - started
        leftovers = running.leftovers()
        assert not leftovers, f"processes left running after teardown: {leftovers}"
        if failed:
            print(f"stack folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("stack timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:45} {seconds:6.1f} s")
