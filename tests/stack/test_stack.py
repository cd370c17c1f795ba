"""The deployed platform runs every product (issue 11, item 8): the example mesh through the real
Airflow stack, then faults injected on a producer/consumer chain.

The mesh runs once (the `mesh_run` fixture): platform setup, then each cron-scheduled product
unpaused and triggered through the REST API in waves (a wave reads only what earlier waves
publish); the asset-scheduled consumers are unpaused and must start on their own from the asset
events publish emits. Each fault test then runs the chain PRODUCER -> CONSUMER once more: a worker killed in the middle
of dbt run, of the gate and of publish (before and after its commit), the scheduler restarted, the
warehouse cut off, and a deploy (a commit to the branch the git DAG bundle follows) during a run.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from psycopg2 import sql

from generator.layout import CATALOG_SCHEMA, spec_path
from generator.runtime.dbt_runner import PARSE_REUSED_NOTE
from tests.stack import warehouse_checks as checks
from tests.stack.harness import TIMINGS, WORKERS, Stack, commit
from tests.stack.locks import HeldLock
from tests.stack.processes import wait_for

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
    # What each task takes on a Celery worker (Airflow's duration: its process's start, the DAG
    # file's parse for that one DAG, the task's own work), for the figures of docs/deploy.md.
    durations: dict[str, list[float]] = {}
    for key, run in result.runs.items():
        for task_id, ti in stack.api.task_instances(key, run["dag_run_id"]).items():
            if ti.get("duration") is not None:
                durations.setdefault(task_id, []).append(float(ti["duration"]))
    for task_id, seconds in durations.items():
        TIMINGS[f"task {task_id} on a worker (median of {len(seconds)})"] = statistics.median(seconds)
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


def test_tasks_start_from_the_dbt_state_prepared_at_deploy_time(stack: Stack, mesh_run: MeshRun) -> None:
    """airflow-init's `datamesh platform prepare` linked the packages and parsed each project once,
    into the shared store; every dbt task, in its worker's checkout of the bundle, parsed nothing."""
    init_log = (stack.logs / "airflow-init.log").read_text(errors="replace")
    assert f"{len(mesh_run.mesh.products)} dbt project(s): {len(mesh_run.mesh.products)} parsed" in init_log
    for key, run in mesh_run.runs.items():
        for task_id in ("dbt_run", "dbt_test"):
            log = stack.task_log(key, run["dag_run_id"], task_id, attempt=1)
            assert PARSE_REUSED_NOTE in log, f"{key} {task_id}:\n{log[-3000:]}"
            assert "$ dbt deps" not in log, f"{key} {task_id}: installed packages at run time"


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


def run_chain_with_fault(stack: Stack, chain: dict, fault, name: str, consumer: bool = True) -> dict:  # type: ignore[no-untyped-def]
    """Trigger the producer, call `fault(run_id)` while its dbt_run runs, then wait for the producer's
    run and (unless `consumer` is False: it is paused) the consumer's asset-triggered run; check the
    warehouse after both."""
    started = time.monotonic()
    known = {r["dag_run_id"] for r in stack.api.runs(CONSUMER)}
    run_id = stack.api.trigger(PRODUCER)
    wait_for_task(stack, PRODUCER, run_id, "dbt_run")
    fault(run_id)
    producer = stack.api.wait_for_run(PRODUCER, run_id, RUN_TIMEOUT)
    assert producer["state"] == "success", f"{PRODUCER} after {name}: {stack.api.task_instances(PRODUCER, run_id)}"
    finished = [(chain["producer"], producer)]
    if consumer:
        consumer_ran = consumer_run(stack, CONSUMER, known)
        assert consumer_ran["state"] == "success"
        assert consumer_ran["run_type"] == "asset_triggered"
        finished.append((chain["consumer"], consumer_ran))
    with closing(stack.warehouse()) as conn:
        for spec, run in finished:
            checks.assert_consistent(conn, spec, [run["dag_run_id"]])
    TIMINGS[f"fault: {name}"] = time.monotonic() - started
    return producer


def worker_of(stack: Stack, run_id: str, task_id: str) -> str:
    """The worker running the producer's `task_id` (its task process is titled with the try's id)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ti = stack.api.task_instances(PRODUCER, run_id)[task_id]
        hostname = stack.worker_running(ti.get("pid"), command_hint=f"airflow worker -- {ti['id']}")
        if hostname:
            return hostname
        time.sleep(0.2)
    raise AssertionError(f"no worker holds the running {task_id}")


def wait_for_retry(stack: Stack, run_id: str, task_id: str, timeout: float = 180) -> dict:
    """The task's second (or later) try, once it runs or has run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ti = stack.api.task_instances(PRODUCER, run_id)[task_id]
        if ti["try_number"] >= 2 and ti["state"] in ("running", "success", "failed"):
            return ti
        time.sleep(0.5)
    raise AssertionError(f"{task_id} of {run_id} was not retried within {timeout:.0f}s")


def kill_mid_task(stack: Stack, run_id: str, task_id: str, killed: list[str], lock: HeldLock) -> None:
    """Kill the worker of `task_id` (waiting for `lock`), release the lock, and once the retry runs
    (on the other worker, the only one up) start the killed worker again."""
    hostname = worker_of(stack, run_id, task_id)
    stack.services[hostname].kill()
    killed.append(f"{task_id}@{hostname}")
    lock.release()
    wait_for_retry(stack, run_id, task_id)
    stack.services[hostname].start()


def snapshots(stack: Stack, key: str) -> list[str]:
    with closing(stack.warehouse()) as conn, conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname ~ %s ORDER BY 1", (f"^{key}__s[0-9]+$",))
        return [r[0] for r in cur.fetchall()]


def catalog_run(stack: Stack, run_id: str) -> dict:
    with closing(stack.warehouse()) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT version, snapshot FROM {CATALOG_SCHEMA}.runs WHERE run_id = %s AND outcome = 'success'", (run_id,)
        )
        rows = cur.fetchall()
    assert len(rows) == 1, f"run {run_id} is in the catalog {len(rows)} times"
    return {"version": rows[0][0], "snapshot": rows[0][1]}


def test_workers_killed_mid_task_are_replaced_and_nothing_is_lost_or_mixed(stack: Stack, chain: dict) -> None:
    """A worker dies during dbt run, during the gate (its compliance record not yet written) and
    during publish (its transaction not yet committed): each task is retried on the other worker,
    and the retries redo the work cleanly: one gate record, one new snapshot, the views on it."""
    producer = chain["producer"]
    killed: list[str] = []
    before = snapshots(stack, producer.key)
    # Held from the start: dbt run's query reading its first input waits (the input's published view
    # locked), the gate's INSERT of its compliance record waits (a SHARE lock lets readers through),
    # and so does publish's CREATE OR REPLACE VIEW (a reader holds the view).
    first = producer.inputs.products[0]
    upstream = HeldLock(stack.warehouse, sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
        sql.Identifier(first.published_schema, first.output)))
    records = HeldLock(stack.warehouse, f"LOCK TABLE {CATALOG_SCHEMA}.compliance_records IN SHARE MODE")
    view = sql.Identifier(producer.published_schema, producer.outputs[0].name)
    reader = HeldLock(stack.warehouse, sql.SQL("SELECT * FROM {} LIMIT 1").format(view))
    served: dict[str, str] = {}

    def kill_the_workers(run_id: str) -> None:
        upstream.wait_for_waiter('/* {"app": "dbt"')  # dbt's queries start with its query comment
        kill_mid_task(stack, run_id, "dbt_run", killed, lock=upstream)
        records.wait_for_waiter(f"INSERT INTO {CATALOG_SCHEMA}.compliance_records")
        kill_mid_task(stack, run_id, "governance_gate", killed, lock=records)
        reader.wait_for_waiter("CREATE OR REPLACE VIEW")
        with closing(stack.warehouse()) as conn:  # the catalogs only: the view's lock is queued for
            served.update(checks.view_snapshots(conn, producer))
        kill_mid_task(stack, run_id, "publish", killed, lock=reader)

    try:
        run = run_chain_with_fault(stack, chain, kill_the_workers, "workers killed during dbt_run, gate, publish")
    finally:
        upstream.release()
        records.release()
        reader.release()
    run_id = run["dag_run_id"]
    assert [k.split("@")[0] for k in killed] == ["dbt_run", "governance_gate", "publish"], killed
    for task_id in ("dbt_run", "governance_gate", "publish"):
        assert len(stack.api.tries(PRODUCER, run_id, task_id)) >= 2, task_id
    # dbt_run's retry ran on the other worker, the only one up then
    dead = killed[0].split("@")[1]
    (survivor,) = set(WORKERS) - {dead}
    tries = len(stack.api.tries(PRODUCER, run_id, "dbt_run"))
    retried = f"task_id='dbt_run', dag_id='{PRODUCER}', run_id='{run_id}', try_number={tries}"
    assert retried in stack.services[survivor].log.read_text(errors="replace"), f"{survivor} did not run the retry"
    # publish's first attempt was rolled back with its worker: the views read the old snapshot
    # then, and the retry published exactly one new snapshot, the next in sequence.
    assert set(served.values()) == {before[-1]}, (served, before)
    after = snapshots(stack, producer.key)
    published = catalog_run(stack, run_id)["snapshot"]
    assert [s for s in after if s not in before] == [published], (before, after)
    assert int(published.rsplit("__s", 1)[1]) == int(before[-1].rsplit("__s", 1)[1]) + 1
    with closing(stack.warehouse()) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*) FROM {CATALOG_SCHEMA}.compliance_records WHERE run_id = %s AND moment = 'gate'",
            (run_id,),
        )
        assert cur.fetchone()[0] == 1, "the gate's record of the run is not there exactly once"


def test_the_run_survives_a_scheduler_restart(stack: Stack, chain: dict) -> None:
    scheduler = stack.services["scheduler"]
    starts = scheduler.starts
    run_chain_with_fault(stack, chain, lambda run_id: scheduler.restart(), "scheduler restarted")
    assert scheduler.starts == starts + 1 and scheduler.alive()


def bump_patch(version: str) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def deploy_version(stack: Stack, spec: checks.DataProduct, version: str) -> str:
    """A deploy: the producer's spec at `version`, re-rendered, committed to the branch the git DAG
    bundle follows. The new commit."""
    checkout = stack.checkouts["main"]
    path = spec_path(checkout, spec.domain, spec.name)
    text = path.read_text(encoding="utf-8")
    current = yaml.safe_load(text)["version"]
    assert f"\nversion: {current}\n" in text, path
    path.write_text(text.replace(f"\nversion: {current}\n", f"\nversion: {version}\n"), encoding="utf-8")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("datamesh")), "render"],
        cwd=checkout, env={**os.environ, "PYTHONPATH": str(checks.REPO_ROOT)}, capture_output=True, text=True,
        check=False, timeout=120,
    )
    assert done.returncode == 0, f"datamesh render:\n{done.stdout}\n{done.stderr}"
    return commit(checkout, f"{spec.key} {version}")


def test_a_run_reads_the_revision_it_was_created_from(stack: Stack, chain: dict) -> None:
    """A deploy (a new spec version committed) while a run goes on: every task of the run, the
    retry of a publish whose worker died after its commit included, runs from the commit the run
    was created from, and the catalog records the old version; the next run is on the new commit."""
    producer = chain["producer"]
    first_commit = stack.api.dag(PRODUCER)["bundle_version"]
    assert first_commit, "the producer's DAG has no bundle version: not from the git DAG bundle"
    old = yaml.safe_load(spec_path(stack.checkouts["main"], producer.domain, producer.name).read_text())["version"]
    new = bump_patch(old)
    deployed: dict[str, str] = {}
    killed: list[str] = []

    def deploy_then_kill_after_publish(run_id: str) -> None:
        deployed["commit"] = deploy_version(stack, producer, new)
        # publish commits, then reads the catalog for its notices: there it waits, and dies
        subscriptions = HeldLock(stack.warehouse, f"LOCK TABLE {CATALOG_SCHEMA}.subscriptions IN ACCESS EXCLUSIVE MODE")
        try:
            subscriptions.wait_for_waiter("SELECT DISTINCT 'product '")
            with closing(stack.warehouse()) as conn:
                deployed["snapshot"] = checks.view_snapshots(conn, producer)[producer.outputs[0].name]
            kill_mid_task(stack, run_id, "publish", killed, lock=subscriptions)
        finally:
            subscriptions.release()

    # The consumer stays paused (its runs would only add time); its queued asset events are dropped.
    stack.api.set_paused(CONSUMER, True)
    try:
        run = run_chain_with_fault(stack, chain, deploy_then_kill_after_publish, "a deploy during the run", False)
        later = run_on_the_new_commit(stack, chain, deployed["commit"])
    finally:
        stack.api.drop_queued_asset_events(CONSUMER)
    run_id, second_commit = run["dag_run_id"], deployed["commit"]
    assert run["bundle_version"] == first_commit != second_commit
    for task_id, ti in stack.api.task_instances(PRODUCER, run_id).items():
        for attempt in range(1, ti["try_number"] + 1):
            log = stack.task_log(PRODUCER, run_id, task_id, attempt)
            assert f"(DAG bundle version {first_commit})" in log, f"{task_id} try {attempt}:\n{log[-2000:]}"
            assert second_commit not in log, f"{task_id} try {attempt} saw the new commit"
    # the retry after publish's commit returned the first attempt's snapshot; the catalog has the old version
    assert len(stack.api.tries(PRODUCER, run_id, "publish")) >= 2
    assert catalog_run(stack, run_id) == {"version": old, "snapshot": deployed["snapshot"]}
    assert deployed["snapshot"] in snapshots(stack, producer.key)
    # the next run: on the new commit, and the catalog has the new version
    assert later["bundle_version"] == second_commit
    assert catalog_run(stack, later["dag_run_id"])["version"] == new


def run_on_the_new_commit(stack: Stack, chain: dict, commit: str) -> dict:
    """Once the dag-processor has parsed `commit`, a run of the producer."""

    def on_the_new_commit() -> bool:
        return stack.api.dag(PRODUCER)["bundle_version"] == commit

    wait_for("the dag-processor to parse the new commit", on_the_new_commit, timeout=120, interval=1)
    return run_chain_with_fault(stack, chain, lambda run_id: None, "the run after the deploy", False)


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
