"""The OpenLineage run events of a publish, written by openlineage-python's file transport, and how
$DATAMESH_OPENLINEAGE configures the Airflow OpenLineage provider (locally and in the image)."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.catalog.openlineage import (
    MODE_VARIABLE,
    client_from_environment,
    provider_settings,
    publish_run,
    run_uuid,
)
from generator.errors import UserError
from generator.spec.dataset_names import DATABASE_VARIABLE, NAMESPACE_VARIABLE
from generator.spec.load import load_spec
from generator.warehouse.connection import Warehouse


@pytest.fixture(scope="module")
def spec(repo_root: Path):
    return load_spec(repo_root / "dbt/commerce/orders/data_product.yaml")


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_publish_emits_start_and_complete_and_a_failed_one_start_and_fail(tmp_path, spec):
    warehouse = Warehouse("db.internal", 5433, "postgres", "", "mesh", embedded=False)
    out = tmp_path / "lineage" / "events.jsonl"
    out.parent.mkdir()
    env = {MODE_VARIABLE: f"file:{out}", NAMESPACE_VARIABLE: "db.internal:5433", DATABASE_VARIABLE: "mesh"}

    with publish_run(spec, warehouse, "scheduled__2024-01-02", environ=env):
        pass
    with pytest.raises(RuntimeError, match="views"), publish_run(spec, warehouse, "manual__9", environ=env):
        raise RuntimeError("could not point the views")

    written = events(out)
    assert [e["eventType"] for e in written] == ["START", "COMPLETE", "START", "FAIL"]
    first = written[0]
    assert first["job"]["namespace"] == "datamesh" and first["job"]["name"] == "commerce__orders.publish_views"
    assert first["run"]["runId"] == written[1]["run"]["runId"] == run_uuid(spec, "scheduled__2024-01-02")
    assert written[2]["run"]["runId"] != first["run"]["runId"]
    assert {d["namespace"] for d in first["inputs"] + first["outputs"]} == {"postgres://db.internal:5433"}
    # publish reads the tested build and writes the published views
    assert [d["name"] for d in first["inputs"]] == [
        "mesh.commerce__orders__build.orders_fact",
        "mesh.commerce__orders__build.order_events",
    ]
    assert [d["name"] for d in first["outputs"]] == [
        "mesh.commerce__orders__v1.orders_fact",
        "mesh.commerce__orders__v1.order_events",
    ]
    fields = first["outputs"][0]["facets"]["schema"]["fields"]
    assert (fields[0]["name"], fields[0]["type"], fields[0]["description"]) == (
        "order_id",
        "text",
        "Order identifier.",
    )
    lineage = first["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert set(lineage) == {f["name"] for f in fields}
    assert lineage["order_id"]["inputFields"] == [
        {
            "namespace": "postgres://db.internal:5433",
            "name": "mesh.commerce__orders__build.orders_fact",
            "field": "order_id",
            "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}],
        }
    ]
    assert "parent" not in first["run"].get("facets", {})  # outside an Airflow task: no parent
    assert written[3]["run"]["facets"]["errorMessage"]["message"] == "could not point the views"
    assert first["producer"].startswith("https://") and first["eventTime"]


def test_dataset_names_come_from_the_settings_not_from_the_server_reached(tmp_path, spec, caplog):
    """The names must be the ones the DAGs' Assets carry, rendered on another machine: the embedded
    server's socket and an unset setting both give localhost:5432 and the database postgres."""
    out = tmp_path / "events.jsonl"
    socket = Warehouse("/tmp/pg-socket", 5432, "postgres", "", "postgres", embedded=True)
    with publish_run(spec, socket, "r1", environ={MODE_VARIABLE: f"file:{out}"}):
        pass
    assert events(out)[0]["outputs"][0]["namespace"] == "postgres://localhost:5432"
    assert events(out)[0]["outputs"][0]["name"] == "postgres.commerce__orders__v1.orders_fact"
    assert "DATAMESH_WAREHOUSE_NAMESPACE" not in caplog.text
    # A server elsewhere with the settings unset: still the settings' names, and a warning saying so
    remote = Warehouse("db.internal", 5433, "postgres", "", "mesh", embedded=False)
    with publish_run(spec, remote, "r2", environ={MODE_VARIABLE: f"file:{out}"}):
        pass
    assert events(out)[-1]["outputs"][0]["namespace"] == "postgres://localhost:5432"
    assert "set $DATAMESH_WAREHOUSE_NAMESPACE" in caplog.text


def test_the_setting_configures_the_airflow_provider_and_unset_leaves_it_disabled():
    assert provider_settings({}) == {}
    assert provider_settings({MODE_VARIABLE: "off", "OPENLINEAGE_URL": "http://x"}) == {}
    assert provider_settings({MODE_VARIABLE: "http://marquez:5000"}) == {
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "datamesh",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": '{"type": "http", "url": "http://marquez:5000"}',
    }
    assert json.loads(provider_settings({MODE_VARIABLE: "file:/var/ol.jsonl"})["AIRFLOW__OPENLINEAGE__TRANSPORT"]) == {
        "type": "file", "log_file_path": "/var/ol.jsonl", "append": True,
    }
    assert json.loads(provider_settings({MODE_VARIABLE: "console"})["AIRFLOW__OPENLINEAGE__TRANSPORT"]) == {
        "type": "console"
    }
    # `client`: the provider reads OPENLINEAGE_URL itself; only the job namespace is set
    only_namespace = {"AIRFLOW__OPENLINEAGE__NAMESPACE": "datamesh"}
    assert provider_settings({"OPENLINEAGE_URL": "http://marquez:5000"}) == only_namespace


def test_the_local_airflow_gets_the_providers_settings_and_none_when_off(tmp_path, monkeypatch):
    from generator.dev.airflow_local import airflow_env

    warehouse = Warehouse("db.internal", 5433, "postgres", "", "mesh", embedded=False)
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    off = airflow_env(tmp_path, warehouse)
    assert not [k for k in off if k.startswith("AIRFLOW__OPENLINEAGE__")]
    monkeypatch.setenv(MODE_VARIABLE, "http://127.0.0.1:5000")
    on = airflow_env(tmp_path, warehouse)
    assert json.loads(on["AIRFLOW__OPENLINEAGE__TRANSPORT"]) == {"type": "http", "url": "http://127.0.0.1:5000"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", set()),
        ("http://marquez:5000", {"AIRFLOW__OPENLINEAGE__TRANSPORT={\"type\": \"http\", \"url\": \"http://marquez:5000\"}"}),
        ("file:/tmp/it's here.jsonl", {
            "AIRFLOW__OPENLINEAGE__TRANSPORT="
            '{"type": "file", "log_file_path": "/tmp/it\'s here.jsonl", "append": true}'
        }),
    ],
)
def test_the_images_entrypoint_maps_the_setting_before_running_the_command(value, expected, repo_root):
    env = {
        "PATH": os.environ["PATH"], "PYTHONPATH": str(repo_root), "DATAMESH_PYTHON": sys.executable,
        MODE_VARIABLE: value,
    }
    done = subprocess.run(
        ["sh", str(repo_root / "docker/entrypoint.sh"), "env"], env=env, capture_output=True, text=True, check=True
    )
    lines = set(done.stdout.splitlines())
    assert {line for line in lines if line.startswith("AIRFLOW__OPENLINEAGE__TRANSPORT=")} == expected
    assert ("AIRFLOW__OPENLINEAGE__NAMESPACE=datamesh" in lines) == bool(value)


def test_the_images_entrypoint_refuses_a_bad_setting_and_runs_nothing(repo_root, tmp_path):
    env = {
        "PATH": os.environ["PATH"], "PYTHONPATH": str(repo_root), "DATAMESH_PYTHON": sys.executable,
        MODE_VARIABLE: "kafka",
    }
    marker = tmp_path / "ran"
    done = subprocess.run(
        ["sh", str(repo_root / "docker/entrypoint.sh"), "touch", str(marker)], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and not marker.exists()
    assert "$DATAMESH_OPENLINEAGE='kafka' is not understood" in done.stderr


def test_off_by_default_and_a_bad_setting_is_refused(tmp_path, spec):
    assert client_from_environment({}) is None
    assert client_from_environment({MODE_VARIABLE: "off", "OPENLINEAGE_URL": "http://x"}) is None
    assert client_from_environment({"OPENLINEAGE_URL": "http://marquez:5000"}) is not None
    with pytest.raises(UserError, match=r"DATAMESH_OPENLINEAGE='kafka' is not understood; use off, console"):
        client_from_environment({MODE_VARIABLE: "kafka"})


@pytest.fixture
def backend() -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    """A real HTTP server on localhost standing in for Marquez: (its URL, the (path, event) it got)."""
    received: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("form", ["{url}", "http:{url}"], ids=["plain URL", "http:<url>"])
def test_events_reach_an_http_backend_named_by_its_url(spec, backend, form):
    url, received = backend
    warehouse = Warehouse("db.internal", 5433, "postgres", "", "mesh", embedded=False)
    with publish_run(spec, warehouse, "scheduled__1", environ={MODE_VARIABLE: form.format(url=url)}):
        pass
    assert [(path, event["eventType"]) for path, event in received] == [
        ("/api/v1/lineage", "START"),
        ("/api/v1/lineage", "COMPLETE"),
    ]
    assert received[0][1]["job"]["name"] == "commerce__orders.publish_views"


@pytest.mark.parametrize(
    "value", ["kafka", "ftp://marquez:5000", "http:marquez:5000", "http://marquez:port", "file:", "https://"]
)
def test_a_setting_that_names_no_transport_is_refused_with_the_forms_allowed(value):
    with pytest.raises(UserError) as refused:
        client_from_environment({MODE_VARIABLE: value})
    assert str(refused.value) == (
        f"$DATAMESH_OPENLINEAGE={value!r} is not understood; use off, console, file:<path>, an http:// or "
        "https:// URL of an OpenLineage backend (e.g. http://marquez:5000), or client"
    )
