"""The deployed platform runs every product (issue 11, item 8): the example mesh through the real
Airflow stack, then faults injected on a producer/consumer chain.

The mesh runs once (the `mesh_run` fixture): platform setup, then each cron-scheduled product
unpaused and triggered through the REST API in waves (a wave reads only what earlier waves
publish); the asset-scheduled consumers are unpaused and must start on their own from the asset
events publish emits. Each fault test then runs the chain PRODUCER -> CONSUMER once more.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field

import pytest

from tests.stack import warehouse_checks as checks
from tests.stack.harness import TIMINGS, WORKERS, Stack

pytestmark = pytest.mark.stack

PRODUCER = "sales__sales_orders_analytical"
CONSUMER = "finance__revenue_metrics"
RUN_TIMEOUT = 300  # seconds for one product's run, retries included
# What psycopg2 and dbt say when the warehouse goes away or refuses connections.
CONNECTION_LOST = re.compile(r"connection refused|server closed the connection|connection.*(lost|reset|closed)", re.I)


@dataclass
class MeshRun:
    mesh: checks.Mesh
    setup_output: str  # what `datamesh platform setup`, run again by the test, printed
    runs: dict[str, dict] = field(default_factory=dict)  # dag id -> its (finished) run


def run_and_wait(stack: Stack, dag_id: str) -> dict:
    stack.api.set_paused(dag_id, False)
    run_id = stack.api.trigger(dag_id)
    return stack.api.wait_for_run(dag_id, run_id, RUN_TIMEOUT)


def consumer_run(stack: Stack, dag_id: str, known: set[str]) -> dict:
    run = stack.api.wait_for_new_run(dag_id, known, timeout=120)
    return stack.api.wait_for_run(dag_id, run["dag_run_id"], RUN_TIMEOUT)


@pytest.fixture(scope="session")
def mesh_run(stack: Stack) -> MeshRun:
    started = time.monotonic()
    root = stack.checkouts["main"]
    setup_output = checks.platform_setup(root, stack.warehouse_env())
    TIMINGS["platform setup (again)"] = time.monotonic() - started
    result = MeshRun(checks.example_mesh(root), setup_output)
    stack.wait_for_dags({p.spec.key for p in result.mesh.products})
    TIMINGS["DAGs parsed"] = time.monotonic() - started

    consumers = checks.asset_consumers(result.mesh)
    known = {s.key: {r["dag_run_id"] for r in stack.api.runs(s.key)} for s in consumers}
    for spec in consumers:
        stack.api.set_paused(spec.key, False)
    for number, wave in enumerate(checks.producer_levels(result.mesh), start=1):
        wave_started = time.monotonic()
        with ThreadPoolExecutor(len(wave)) as pool:
            finished = dict(
                zip([s.key for s in wave], pool.map(lambda s: run_and_wait(stack, s.key), wave), strict=True)
            )
        result.runs.update(finished)
        TIMINGS[f"mesh wave {number}: {', '.join(finished)}"] = time.monotonic() - wave_started
    wave_started = time.monotonic()
    with ThreadPoolExecutor(len(consumers)) as pool:
        finished = dict(
            zip(
                [s.key for s in consumers],
                pool.map(lambda s: consumer_run(stack, s.key, known[s.key]), consumers),
                strict=True,
            )
        )
    result.runs.update(finished)
    TIMINGS[f"mesh consumers: {', '.join(finished)}"] = time.monotonic() - wave_started
    TIMINGS["mesh total"] = time.monotonic() - started
    return result


# --- the whole mesh ---------------------------------------------------------------------------------


@pytest.mark.skipif(not checks.has_platform_setup_command(), reason="`datamesh platform setup` is not there yet")
def test_airflow_init_sets_the_platform_up_and_a_second_setup_changes_nothing(stack: Stack, mesh_run: MeshRun) -> None:
    init_log = (stack.logs / "airflow-init.log").read_text(errors="replace")
    assert re.search(rf"\d+ change\(s\) for {len(mesh_run.mesh.products)} product\(s\)", init_log), init_log[-2000:]
    assert "nothing to change" in mesh_run.setup_output, mesh_run.setup_output


def test_every_product_runs_to_success(mesh_run: MeshRun) -> None:
    assert {p.spec.key for p in mesh_run.mesh.products} == set(mesh_run.runs)
    assert {key: run["state"] for key, run in mesh_run.runs.items()} == dict.fromkeys(mesh_run.runs, "success")


def test_consumers_start_from_their_inputs_assets(mesh_run: MeshRun) -> None:
    for spec in checks.asset_consumers(mesh_run.mesh):
        assert mesh_run.runs[spec.key]["run_type"] == "asset_triggered", spec.key
    for wave in checks.producer_levels(mesh_run.mesh):
        for spec in wave:
            assert mesh_run.runs[spec.key]["run_type"] == "manual", spec.key


def test_rows_and_catalog_entries_are_right(stack: Stack, mesh_run: MeshRun) -> None:
    with closing(stack.warehouse()) as conn:
        for entry in mesh_run.mesh.products:
            checks.assert_consistent(conn, entry.spec, [mesh_run.runs[entry.spec.key]["dag_run_id"]])


def test_granted_roles_read_and_others_do_not(stack: Stack, mesh_run: MeshRun) -> None:
    everyone = {r for p in mesh_run.mesh.products for r in p.spec.access.roles}
    with closing(stack.warehouse()) as conn:
        for entry in mesh_run.mesh.products:
            spec = entry.spec
            output = spec.outputs[0]
            column = next(c.name for c in output.columns if not c.pii)  # PII columns are for pii_roles only
            for role in sorted(everyone):
                granted = role in spec.access.roles
                readable = checks.can_read(conn, role, spec.published_schema, output.name, column)
                assert readable == granted, (spec.key, role)


# --- faults on the chain PRODUCER -> CONSUMER ---------------------------------------------------------


@pytest.fixture
def chain(stack: Stack, mesh_run: MeshRun) -> dict[str, checks.DataProduct]:
    """Only the chain's two DAGs unpaused (other consumers of the producer would run too), both
    workers up, and every product of the mesh published once already."""
    specs = {p.spec.key: p.spec for p in mesh_run.mesh.products}
    for key in specs:
        stack.api.set_paused(key, key not in (PRODUCER, CONSUMER))
    for hostname in WORKERS:
        if not stack.services[hostname].alive():
            stack.services[hostname].start()
            stack.wait_for_worker(hostname)
    return {"producer": specs[PRODUCER], "consumer": specs[CONSUMER]}


def wait_for_task(stack: Stack, dag_id: str, run_id: str, task_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = stack.api.task_instances(dag_id, run_id).get(task_id)
        if ti and ti["state"] == "running":
            return ti
        if stack.api.run(dag_id, run_id)["state"] in ("success", "failed"):
            break
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}.{task_id} of {run_id} was never seen running")


def run_chain_with_fault(stack: Stack, chain: dict, fault, name: str) -> dict:  # type: ignore[no-untyped-def]
    """Trigger the producer, call `fault(run_id)` while its dbt_run runs, then wait for the producer's
    run and the consumer's asset-triggered run; check the warehouse after both."""
    started = time.monotonic()
    known = {r["dag_run_id"] for r in stack.api.runs(CONSUMER)}
    run_id = stack.api.trigger(PRODUCER)
    wait_for_task(stack, PRODUCER, run_id, "dbt_run")
    fault(run_id)
    producer = stack.api.wait_for_run(PRODUCER, run_id, RUN_TIMEOUT)
    assert producer["state"] == "success", f"{PRODUCER} after {name}: {stack.api.task_instances(PRODUCER, run_id)}"
    consumer = consumer_run(stack, CONSUMER, known)
    assert consumer["state"] == "success"
    assert consumer["run_type"] == "asset_triggered"
    with closing(stack.warehouse()) as conn:
        for spec, run in ((chain["producer"], producer), (chain["consumer"], consumer)):
            checks.assert_consistent(conn, spec, [run["dag_run_id"]])
    TIMINGS[f"fault: {name}"] = time.monotonic() - started
    return producer


def test_a_worker_killed_mid_task_is_replaced_by_the_other(stack: Stack, chain: dict) -> None:
    killed: list[str] = []

    def kill_the_worker(run_id: str) -> None:
        ti = stack.api.task_instances(PRODUCER, run_id)["dbt_run"]
        deadline = time.monotonic() + 30
        hostname = None
        while hostname is None and time.monotonic() < deadline:
            hostname = stack.worker_running(ti.get("pid"), command_hint=f"dbt/{chain['producer'].domain}/")
            time.sleep(0.2)
        assert hostname, "no worker holds the running dbt_run"
        time.sleep(1)  # into the middle of dbt
        stack.services[hostname].kill()
        killed.append(hostname)

    producer = run_chain_with_fault(stack, chain, kill_the_worker, "worker killed during dbt_run")
    tries = stack.api.tries(PRODUCER, producer["dag_run_id"], "dbt_run")
    assert len(tries) >= 2, tries
    assert not stack.services[killed[0]].alive()
    (survivor,) = set(WORKERS) - set(killed)
    retried = f"task_id='dbt_run', dag_id='{PRODUCER}', run_id='{producer['dag_run_id']}', try_number={len(tries)}"
    assert retried in stack.services[survivor].log.read_text(errors="replace"), f"{survivor} did not run the retry"


def test_the_run_survives_a_scheduler_restart(stack: Stack, chain: dict) -> None:
    scheduler = stack.services["scheduler"]
    starts = scheduler.starts
    run_chain_with_fault(stack, chain, lambda run_id: scheduler.restart(), "scheduler restarted")
    assert scheduler.starts == starts + 1 and scheduler.alive()


def test_a_warehouse_outage_is_retried(stack: Stack, chain: dict) -> None:
    def outage(run_id: str) -> None:
        # Cut the warehouse off while the task is talking to it (only tasks go through the proxy).
        deadline = time.monotonic() + 60
        while stack.proxy.open_connections == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        stack.proxy.pause()
        time.sleep(6)
        stack.proxy.resume()

    producer = run_chain_with_fault(stack, chain, outage, "warehouse unreachable for 6 s")
    tis = stack.api.task_instances(PRODUCER, producer["dag_run_id"])
    retried = [task_id for task_id, ti in tis.items() if ti["try_number"] >= 2]
    assert retried, "no task met the outage"
    first_try = stack.task_log(PRODUCER, producer["dag_run_id"], retried[0], attempt=1)
    assert CONNECTION_LOST.search(first_try), (
        f"{retried[0]}'s first try did not fail on the connection:\n{first_try[-3000:]}"
    )
