"""Data-aware scheduling for real: Airflow's scheduler runs a consumer because its producer published.

A scratch repo holds a mesh of two products: `stock/items` (a copy of products/product_catalog,
cron-scheduled, reading an operational table) and `shop/item_counts` (no schedule: it reads
stock/items, so its DAG is scheduled on the Asset stock/items' publish task emits). Airflow runs as
it does in production, minus the containers: scheduler (LocalExecutor), dag-processor and
api-server (Airflow 3 tasks report through its execution API), with their metadata in a database
of their own on the session's embedded PostgreSQL. The test triggers the producer only and waits
for the consumer's asset-triggered run.

The producer's freshness SLA is made a few seconds long, so its DeadlineAlert fires for real while
the run is going and Airflow's executor calls generator.runtime.callbacks.record_sla_miss.

Every process is started in a process group of its own and the whole group is ended in `finally`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg2 import sql

from generator.catalog.incidents import Incident, list_incidents
from generator.dev import airflow_local
from generator.dev.demo import prepare_warehouse
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRODUCER, CONSUMER = "stock__items", "shop__item_counts"
PRODUCER_FRESHNESS_HOURS = 0.001  # 3.6 s: no producer run publishes that fast, so its deadline fires
WAIT_SECONDS = 360

CONSUMER_SPEC: dict[str, Any] = {
    "spec_version": 1,
    "name": "item_counts",
    "domain": "shop",
    "version": "1.0.0",
    "description": "Products per category, rebuilt whenever the stock catalogue publishes.",
    "owner": {"team": "shop_team", "email": "shop-team@example.com"},
    "classification": "internal",
    "retention_days": 365,
    "sla": {"freshness_hours": 24, "completeness": 99.0},
    "inputs": {"products": [{"domain": "stock", "product": "items", "output": "products_dim", "major": 1}]},
    "outputs": [
        {
            "name": "category_counts",
            "description": "One row per product category.",
            "primary_key": ["product_category"],
            "columns": [
                {
                    "name": "product_category",
                    "type": "text",
                    "description": "Merchandising category.",
                    "constraints": {"not_null": True, "unique": True},
                },
                {
                    "name": "products",
                    "type": "integer",
                    "description": "Active products in the category.",
                    "constraints": {"not_null": True, "min": 1},
                },
            ],
        }
    ],
    "access": {"roles": ["analyst"]},
}
CONSUMER_SQL = """\
-- category_counts: how many active products each category has, from the published catalogue.
select
    product_category,
    cast(count(*) as integer) as products
from {{ source('stock__items', 'products_dim') }}
group by product_category
"""


def write_mesh(root: Path) -> None:
    """The two products' specs and model SQL, the platform package and the policies; then render."""
    for folder in ("dbt/_platform", "policies", "generator/schemas"):
        ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__")
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    (root / "dags").mkdir()

    original = REPO / "dbt/products/product_catalog"
    producer = yaml.safe_load((original / "data_product.yaml").read_text())
    producer.update(domain="stock", name="items")
    producer["sla"]["freshness_hours"] = PRODUCER_FRESHNESS_HOURS
    producer["access"]["domains"] = ["shop"]
    write_product(root, producer, {"products_dim": (original / "models/products_dim.sql").read_text()})
    write_product(root, CONSUMER_SPEC, {"category_counts": CONSUMER_SQL})

    done = subprocess.run(
        [str(BIN / "datamesh"), "--root", str(root), "render"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # one DAG file per domain (docs/architecture.md, "DAG files: why this layout"), and the platform's
    domains = sorted(key.split("__")[0] for key in (CONSUMER, PRODUCER))
    assert sorted(p.name for p in (root / "dags").glob("*.py")) == sorted(
        [f"{d}.py" for d in domains] + ["datamesh_platform.py"])
    # This test watches the two products' DAGs; the platform's daily DAG (tested in
    # test_platform_maintenance.py) would only compete with them for the pool here.
    (root / "dags" / "datamesh_platform.py").unlink()


def write_product(root: Path, spec: dict[str, Any], models: dict[str, str]) -> None:
    """The spec and each output's model SQL, as a domain team writes them before `render`."""
    folder = root / "dbt" / spec["domain"] / spec["name"]
    (folder / "models").mkdir(parents=True)
    (folder / "data_product.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for output, model_sql in models.items():
        (folder / "models" / f"{output}.sql").write_text(model_sql)


# --- Airflow, for real ----------------------------------------------------------------------------


@contextmanager
def metadata_database(warehouse: Warehouse) -> Iterator[Warehouse]:
    """A database of its own for Airflow's metadata, dropped afterwards."""
    name = f"airflow_scheduling_{os.getpid()}"
    admin = warehouse.connect(autocommit=True)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    try:
        with admin.cursor() as cur:
            cur.execute(drop)
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield Warehouse(warehouse.host, warehouse.port, warehouse.user, warehouse.password, name, False)
    finally:
        with admin.cursor() as cur:
            cur.execute(drop)
        admin.close()


def sqlalchemy_url(db: Warehouse) -> str:
    from sqlalchemy.engine import URL

    if db.host.startswith("/"):  # a unix-socket folder (the embedded server) goes in the query
        url = URL.create("postgresql+psycopg2", db.user, db.password or None, None, None, db.dbname,
                         {"host": db.host, "port": str(db.port)})
    else:
        url = URL.create("postgresql+psycopg2", db.user, db.password or None, db.host, db.port, db.dbname)
    return url.render_as_string(hide_password=False)


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scheduler_env(root: Path, warehouse: Warehouse, meta: Warehouse, home: Path) -> dict[str, str]:
    port = free_port()  # other test sessions may run an api-server at the same time
    return {
        **airflow_local.airflow_env(root, warehouse, home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(meta),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Unpaused as the DAG processor first sees them (as `airflow dags unpause` would, minus a
        # 5-second CLI start per DAG).
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),  # shared by api-server and workers
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    }


def start(env: dict[str, str], command: list[str], logs: Path) -> subprocess.Popen[bytes]:
    """`airflow <command>` in a process group of its own, so it can be ended with its children."""
    log = (logs / f"{command[0]}.log").open("wb")
    return subprocess.Popen(
        [str(BIN / "airflow"), *command], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever is left of the group (workers, uvicorn children)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def airflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def api_server_up(env: dict[str, str]) -> bool:
    """Whether the execution API answers: a task started before it does fails at once."""
    import urllib.request

    try:
        with urllib.request.urlopen(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] + "health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def incidents(warehouse: Warehouse, domain: str, product: str) -> list[Incident]:
    with closing(warehouse.connect()) as conn:
        return list_incidents(conn, domain, product)


def ended_runs_with_incidents(meta: Warehouse, warehouse: Warehouse) -> list[tuple[str, str]] | None:
    """The producer's (run_id, state) once every run has ended and has an incident, else None."""
    runs = query(meta, "SELECT run_id, state FROM dag_run WHERE dag_id = %s ORDER BY run_after", PRODUCER)
    ended = all(state in ("success", "failed") for _, state in runs)
    recorded = {i.run_id for i in incidents(warehouse, "stock", "items")}
    return runs if ended and recorded == {run_id for run_id, _ in runs} else None


def query(db: Warehouse, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def wait_for(what: str, check: Any, until: float, processes: list[subprocess.Popen[bytes]], logs: Path) -> Any:
    while time.monotonic() < until:
        found = check()
        if found:
            return found
        for process in processes:
            assert process.poll() is None, f"`{' '.join(map(str, process.args))}` died:\n{tail(logs)}"
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}\n{tail(logs)}")


def tail(logs: Path) -> str:
    parts = []
    for log in sorted(logs.rglob("*.log")):
        text = log.read_text(errors="replace")
        parts.append(f"--- {log.relative_to(logs)} ---\n{text[-2500:]}")
    return "\n".join(parts)


# --- the test ---------------------------------------------------------------------------------------


def test_publishing_producer_triggers_its_consumer_through_the_asset(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    started = time.monotonic()
    root = tmp_path / "repo"
    write_mesh(root)
    prepare_warehouse(warehouse, load_mesh(root), echo=lambda _: None)
    logs = tmp_path / "logs"
    logs.mkdir()

    with metadata_database(warehouse) as meta:
        env = scheduler_env(root, warehouse, meta, tmp_path / "airflow_home")
        env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(logs / "tasks")
        airflow_local.migrate(env)  # metadata tables on PostgreSQL, and the `warehouse` pool
        processes: list[subprocess.Popen[bytes]] = []
        try:
            until = time.monotonic() + WAIT_SECONDS
            processes.append(start(env, ["api-server"], logs))
            wait_for("the api-server", lambda: api_server_up(env), until, processes, logs)
            for command in (["dag-processor"], ["scheduler"]):
                processes.append(start(env, command, logs))
            wait_for(
                "both DAGs to be parsed and unpaused",
                lambda: len(query(meta, "SELECT dag_id FROM dag WHERE NOT is_paused AND dag_id IN (%s, %s)",
                                  PRODUCER, CONSUMER)) == 2,
                until, processes, logs,
            )
            ready = time.monotonic() - started
            # Unpausing a cron DAG with catchup=False also starts the run of its latest cron time;
            # the run triggered here comes on top (max_active_runs=1: after it).
            airflow(env, "dags", "trigger", PRODUCER)
            consumer_run = wait_for(
                "a successful asset-triggered run of the consumer",
                lambda: query(meta, "SELECT run_id FROM dag_run WHERE dag_id = %s AND state = 'success' "
                                    "AND run_type = 'asset_triggered'", CONSUMER),
                until, processes, logs,
            )[0][0]
            consumed = time.monotonic() - started
            # Each producer run outlived its few-second freshness window: the scheduler found the
            # missed deadline and the executor ran the callback, once per run.
            producer_runs = wait_for(
                "every producer run to end and record its sla_miss incident",
                lambda: ended_runs_with_incidents(meta, warehouse), until, processes, logs,
            )
            listed = airflow(env, "dags", "list-runs", CONSUMER, "--output", "json")
            runs = json.loads(listed.strip().splitlines()[-1])  # after Airflow's own log lines
        finally:
            stop(processes)
        elapsed = time.monotonic() - started
        print(f"\nscheduling test: DAGs ready {ready:.0f} s, consumer done {consumed:.0f} s, all {elapsed:.0f} s")

    # What a user sees: the consumer ran because of the Asset, not by hand or by its clock.
    states = {r["run_id"]: r["state"] for r in runs}  # as `airflow dags list-runs` shows them
    assert states[consumer_run] == "success"
    assert all(run_id.startswith("asset_triggered__") for run_id in states), states
    # ... and read what the producer published.
    counts = query(warehouse, "SELECT product_category, products FROM shop__item_counts__v1.category_counts")
    assert counts and all(n >= 1 for _, n in counts)
    catalog_runs = query(
        warehouse,
        "SELECT product, outcome FROM datamesh_catalog.runs WHERE domain IN ('stock', 'shop') ORDER BY ended_at",
    )
    assert ("items", "success") in catalog_runs and ("item_counts", "success") in catalog_runs

    # The deadline fired for real, once per producer run (the triggered one among them).
    assert [state for _, state in producer_runs] == ["success"] * len(producer_runs)
    assert any(run_id.startswith("manual__") for run_id, _ in producer_runs)
    for miss in incidents(warehouse, "stock", "items"):
        assert miss.kind == "sla_miss"
        assert miss.details["freshness_hours"] == PRODUCER_FRESHNESS_HOURS
        assert miss.details["deadline"] and miss.details["queued_at"]
        assert "older than its freshness SLA" in miss.message
    # The consumer finished well within its 24 h: its deadline was dropped, no incident.
    assert incidents(warehouse, "shop", "item_counts") == []
