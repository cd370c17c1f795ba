"""The OpenLineage run events of a publish, written by openlineage-python's file transport."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.catalog.openlineage import MODE_VARIABLE, client_from_environment, publish_run, run_uuid
from generator.errors import UserError
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
    env = {MODE_VARIABLE: f"file:{out}"}

    with publish_run(spec, warehouse, "scheduled__2024-01-02", environ=env):
        pass
    with pytest.raises(RuntimeError, match="views"), publish_run(spec, warehouse, "manual__9", environ=env):
        raise RuntimeError("could not point the views")

    written = events(out)
    assert [e["eventType"] for e in written] == ["START", "COMPLETE", "START", "FAIL"]
    first = written[0]
    assert first["job"]["namespace"] == "datamesh" and first["job"]["name"] == "commerce__orders.publish"
    assert first["run"]["runId"] == written[1]["run"]["runId"] == run_uuid(spec, "scheduled__2024-01-02")
    assert written[2]["run"]["runId"] != first["run"]["runId"]
    assert {d["namespace"] for d in first["inputs"] + first["outputs"]} == {"postgres://db.internal:5433"}
    assert [d["name"] for d in first["inputs"]] == [
        "mesh.customers__customer_profiles__v1.customers_dim",
        "mesh.products__product_catalog__v1.products_dim",
        "mesh.commerce_ops.orders",
        "mesh.commerce_ops.order_items",
        "mesh.commerce_ops.order_events",
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
    assert written[3]["run"]["facets"]["errorMessage"]["message"] == "could not point the views"
    assert first["producer"].startswith("https://") and first["eventTime"]


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
    assert received[0][1]["job"]["name"] == "commerce__orders.publish"


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


@pytest.mark.integration
def test_the_embedded_warehouse_is_named_as_localhost(warehouse, spec, tmp_path):
    out = tmp_path / "events.jsonl"
    with publish_run(spec, warehouse, "r1", environ={MODE_VARIABLE: f"file:{out}"}):
        pass
    namespace = events(out)[0]["outputs"][0]["namespace"]
    assert namespace == (
        "postgres://localhost:5432" if warehouse.embedded else f"postgres://{warehouse.host}:{warehouse.port}"
    )
