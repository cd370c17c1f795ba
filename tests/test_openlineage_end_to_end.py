"""OpenLineage end to end: a product's DAG run by Airflow (`airflow dags test`, through `datamesh
demo --product`) with $DATAMESH_OPENLINEAGE pointing at a real HTTP server in this test.

What a lineage backend (Marquez) would get: the Airflow provider's events for the DAG run and each
task, dbt's per-model and per-test runs under the dbt run and dbt test tasks, and the publish under
the publish task; datasets named as the DAG's Assets name them; schema facets and column lineage
from the model's SQL. Every event must validate against OpenLineage's JSON Schema
(tests/openlineage_schema.py, the vendored spec).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.render.airflow_dag import published_assets
from generator.spec.dataset_names import warehouse_names
from generator.spec.load import load_spec
from tests.openlineage_schema import problems

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DATAMESH = str(Path(sys.executable).with_name("datamesh"))
PRODUCT = "customers/customer_profiles"
KEY = "customers__customer_profiles"
TASKS = ("dbt_run", "dbt_test", "governance_gate", "publish", "catalog_register")


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP server standing in for Marquez: (its URL, the events POSTed to it)."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/api/v1/lineage":
                received.append(json.loads(body))
            self.send_response(201 if self.path == "/api/v1/lineage" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def events(receiver, tmp_path_factory: pytest.TempPathFactory, warehouse) -> list[dict]:
    """The events of one successful run of the product's DAG."""
    url, received = receiver
    root = tmp_path_factory.mktemp("openlineage_e2e")
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__", "*.actual")
    for folder in ("dbt", "dags", "policies", "domains"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    env = {**os.environ, "DATAMESH_OPENLINEAGE": url}
    for name in ("DATAMESH_WAREHOUSE_NAMESPACE", "DATAMESH_WAREHOUSE_DATABASE"):
        env.pop(name, None)  # the names the committed DAGs were rendered with
    done = subprocess.run(
        [DATAMESH, "--root", str(root), "demo", "--product", PRODUCT, "--seed-demo-data", "--skip-render"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    log = root / ".datamesh/logs" / f"{KEY}.log"
    told = done.stdout[-3000:] + done.stderr[-3000:] + (log.read_text()[-6000:] if log.exists() else "")
    assert done.returncode == 0, told
    return list(received)


def airflow_task_runs(events: list[dict]) -> dict[str, str]:
    """task id -> the OpenLineage run id the Airflow provider gave the task's run."""
    runs = {}
    for e in events:
        name = e["job"]["name"]
        if e["job"]["namespace"] == "datamesh" and name.startswith(f"{KEY}.") and name.removeprefix(f"{KEY}.") in TASKS:
            runs[name.removeprefix(f"{KEY}.")] = e["run"]["runId"]
    return runs


def test_every_event_validates_against_the_openlineage_schema(events):
    assert len(events) > 10
    invalid = {f"{e['eventType']} {e['job']['name']}": problems(e) for e in events if problems(e)}
    assert invalid == {}


def test_the_airflow_provider_reports_the_dag_run_and_every_task(events):
    runs = airflow_task_runs(events)
    assert set(runs) == set(TASKS)
    states = {(e["job"]["name"], e["eventType"]) for e in events}
    for task in TASKS:
        assert {(f"{KEY}.{task}", "START"), (f"{KEY}.{task}", "COMPLETE")} <= states, task
    assert (KEY, "COMPLETE") in states  # the DAG run


def children_of(events: list[dict], task: str) -> list[dict]:
    """The events whose parent run is the Airflow task's run."""
    run = airflow_task_runs(events)[task]
    return [e for e in events if e["run"].get("facets", {}).get("parent", {}).get("run", {}).get("runId") == run]


def test_dbt_run_reports_each_model_under_the_task_with_schema_and_column_lineage(events):
    spec = load_spec(REPO / "dbt" / PRODUCT / "data_product.yaml")
    names = warehouse_names({})
    models = [e for e in children_of(events, "dbt_run") if e["eventType"] == "COMPLETE"]
    assert {e["outputs"][0]["name"] for e in models} == {names.name(spec.build_schema, o.name) for o in spec.outputs}
    dag_run = next(e["run"]["runId"] for e in events if e["job"]["name"] == KEY)
    for event in models:
        parent = event["run"]["facets"]["parent"]
        assert parent["job"] == {"namespace": "datamesh", "name": f"{KEY}.dbt_run"}
        assert parent["root"]["run"]["runId"] == dag_run and parent["root"]["job"]["name"] == KEY
        output = event["outputs"][0]
        assert output["namespace"] == "postgres://localhost:5432"
        spec_output = next(o for o in spec.outputs if names.name(spec.build_schema, o.name) == output["name"])
        columns = [c.name for c in spec_output.columns]
        assert [f["name"] for f in output["facets"]["schema"]["fields"]] == columns
        # column lineage from the model's compiled SQL: each column from the source table's columns
        lineage = output["facets"]["columnLineage"]["fields"]
        assert set(lineage) == set(columns)
        sources = {f"{names.database}.{s.schema_}.{s.table}" for s in spec.inputs.sources}
        read = {f["name"] for column in lineage.values() for f in column["inputFields"]}
        assert read and read <= sources | {i["name"] for i in event["inputs"]}
        assert {i["name"] for i in event["inputs"]} <= sources
        assert lineage["customer_id"]["inputFields"][0]["field"] == "customer_id"


def test_dbt_test_reports_the_assertions_on_the_build_under_the_task(events):
    spec = load_spec(REPO / "dbt" / PRODUCT / "data_product.yaml")
    names = warehouse_names({})
    tests = [e for e in children_of(events, "dbt_test") if e["eventType"] == "COMPLETE"]
    assert tests
    checked = {i["name"] for e in tests for i in e["inputs"]}
    assert checked == {names.name(spec.build_schema, o.name) for o in spec.outputs}
    assertions = [
        a
        for e in tests
        for i in e["inputs"]
        for a in i.get("facets", {}).get("dataQualityAssertions", {}).get("assertions", [])
    ]
    assert assertions and all(a["success"] for a in assertions)


def test_publish_reports_the_published_views_under_the_name_of_the_dags_assets(events):
    spec = load_spec(REPO / "dbt" / PRODUCT / "data_product.yaml")
    names = warehouse_names({})
    (complete,) = [e for e in children_of(events, "publish") if e["eventType"] == "COMPLETE"]
    assert complete["job"]["name"] == f"{KEY}.publish_views"
    written = [f"{o['namespace']}/{o['name']}" for o in complete["outputs"]]
    assets = [a.name for a in published_assets(spec, names)][: len(spec.outputs)]  # the last is the former Asset
    assert written == assets
    assert [i["name"] for i in complete["inputs"]] == [names.name(spec.build_schema, o.name) for o in spec.outputs]
    for output in complete["outputs"]:
        columns = {f["name"] for f in output["facets"]["schema"]["fields"]}
        assert set(output["facets"]["columnLineage"]["fields"]) == columns
