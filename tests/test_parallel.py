"""Loading and rendering in forked processes (parallel.py) give the same specs and files, and fail the same way."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from generator import parallel
from generator.errors import Problem, SpecError
from generator.parallel import map_in_order, meanwhile
from generator.render.mesh import render_products
from generator.spec import mesh as spec_mesh
from generator.spec.mesh import load_mesh, load_products

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_example_mesh_renders_the_same_bytes_in_three_processes_as_in_one() -> None:
    mesh = load_mesh(REPO_ROOT)
    alone = render_products(mesh, mesh.products, processes=1)
    shared = render_products(mesh, mesh.products, processes=3)
    assert list(shared.generated) == list(alone.generated)  # same files, same order
    assert shared.generated == alone.generated
    assert shared.owned == alone.owned


def test_results_keep_the_order_of_the_items_whichever_process_made_them() -> None:
    items = list(range(23))
    assert map_in_order(lambda n: (n, n * n), items, processes=4) == [(n, n * n) for n in items]


def _fails_on_seven(n: int) -> int:
    if n == 7:
        raise SpecError([Problem("dbt/d/p/data_product.yaml", "outputs.orders", "what went wrong", 12)])
    return n


def test_a_spec_error_in_a_forked_process_reaches_the_caller_with_its_problems() -> None:
    with pytest.raises(SpecError) as raised:
        map_in_order(_fails_on_seven, list(range(10)), processes=2)
    [problem] = raised.value.problems
    assert problem == Problem("dbt/d/p/data_product.yaml", "outputs.orders", "what went wrong", 12)
    assert "dbt/d/p/data_product.yaml:12: outputs.orders: what went wrong" in str(raised.value)


def test_a_spec_error_survives_pickling_with_its_message() -> None:
    error = SpecError([Problem("a.yaml", "name", "must be snake_case", 3), Problem("a.yaml", "", "no outputs")])
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems
    assert str(copy) == str(error)


def test_meanwhile_works_in_another_process_and_gives_its_value_as_often_as_asked() -> None:
    with meanwhile(os.getpid, count=parallel.MIN_PER_PROCESS) as value:
        assert value() != os.getpid()
        assert value() == value()
    with meanwhile(os.getpid, count=parallel.MIN_PER_PROCESS - 1) as value:  # too little to fork for
        assert value() == os.getpid()


def test_meanwhile_raises_what_the_work_raised_when_its_value_is_asked_for() -> None:
    def broken() -> None:
        raise SpecError([Problem("policies/global.yaml", "policies[0]", "not a policy", 3)])

    with meanwhile(broken, count=parallel.MIN_PER_PROCESS) as value, pytest.raises(SpecError) as raised:
        value()
    assert raised.value.problems == [Problem("policies/global.yaml", "policies[0]", "not a policy", 3)]


def test_meanwhile_ends_its_process_when_the_block_leaves_without_asking() -> None:
    before = set(_children())  # e.g. a database server an earlier test started
    started: set[int] = set()
    with pytest.raises(KeyError), meanwhile(lambda: time.sleep(60), count=parallel.MIN_PER_PROCESS):
        started |= set(_children()) - before
        raise KeyError("the block fails before it needs the value")
    assert len(started) == 1 and not started & set(_children())


def test_meanwhile_reports_a_process_killed_before_it_could_answer() -> None:
    with meanwhile(lambda: os.kill(os.getpid(), signal.SIGKILL), count=parallel.MIN_PER_PROCESS) as value:
        with pytest.raises(ChildProcessError, match=r"ended without a result \(killed by SIGKILL\)"):
            value()


def test_the_block_of_meanwhile_shares_out_its_work_and_the_background_process_does_not() -> None:
    """The background process is forked directly (no executor threads here when the block forks)."""
    cores = len(os.sched_getaffinity(0))
    with meanwhile(lambda: parallel.processes_for(10_000), count=parallel.MIN_PER_PROCESS) as value:
        assert parallel.processes_for(10_000) == cores
        pids = map_in_order(lambda _: os.getpid(), list(range(8)), processes=2)
        assert len(set(pids)) == 2
        assert value() == 1


def _children() -> list[int]:
    """This process's live children (Linux's /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(status.parent.name))
    return found


def _example_specs(target: Path) -> Path:
    shutil.copytree(REPO_ROOT / "dbt", target / "dbt", ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    shutil.copytree(REPO_ROOT / "domains", target / "domains")
    return target


def _loaded_in(processes: int, monkeypatch: pytest.MonkeyPatch, load: Callable[[], object]) -> object:
    """What `load` returns (or the text of the SpecError it raises) with the specs shared out among
    `processes` processes (on a large mesh, parallel.py decides; the example mesh is small)."""
    monkeypatch.setattr(spec_mesh, "processes_for", lambda count, per_process: processes)
    try:
        return load()
    except SpecError as error:
        return str(error)


def test_specs_loaded_in_three_processes_are_the_specs_loaded_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    def whole_mesh() -> list[object]:
        return [(e.spec, e.spec_path, e.shown) for e in load_mesh(REPO_ROOT).products]

    def some_products() -> list[object]:
        wanted = ["sales/sales_orders_analytical", "finance/revenue_metrics"]
        mesh, entries = load_products(REPO_ROOT, wanted, {})
        return [[e.shown for e in mesh.products], [e.shown for e in entries]]

    for load in (whole_mesh, some_products):
        alone = _loaded_in(1, monkeypatch, load)
        assert _loaded_in(3, monkeypatch, load) == alone
    assert len(alone) == 2 and len(alone[0]) > 2  # type: ignore[arg-type]  # the inputs were loaded too


def test_broken_specs_in_different_processes_are_reported_as_one_process_reports_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _example_specs(tmp_path)
    first = root / "dbt/commerce/orders/data_product.yaml"
    first.write_text(first.read_text().replace("owner:", "owner: [not, a, mapping]\nowner_was:", 1))
    last = root / "dbt/sales/sales_orders_analytical/data_product.yaml"
    last.write_text(last.read_text().replace("name: sales_orders_analytical", "name: elsewhere"))
    alone = _loaded_in(1, monkeypatch, lambda: load_mesh(root))
    assert isinstance(alone, str)
    assert "dbt/commerce/orders/data_product.yaml" in alone and "dbt/sales/sales_orders_analytical" in alone
    assert _loaded_in(3, monkeypatch, lambda: load_mesh(root)) == alone
