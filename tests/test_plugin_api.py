"""The console's catalog API through a real Airflow api-server with the plugin, on the example mesh:
Airflow's login guards every route, unknown names are 404 and bad queries 400 with a message, the
answers are the CLI's, and writes need more than a read-only role."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from console_catalog import example_catalog
from console_server import ConsoleServer, start_console

from generator.catalog.docs_pages import store_docs_page
from generator.catalog.search import Filters, search
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration
API = "/datamesh/api"


@pytest.fixture(scope="module")
def catalog_db(warehouse: Warehouse, repo_root: Path) -> Iterator[Warehouse]:
    with example_catalog(warehouse, "console_api", repo_root) as db:
        yield db


@pytest.fixture(scope="module")
def server(catalog_db: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    started = start_console(tmp_path_factory.mktemp("airflow-home"), catalog_db)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tokens(server: ConsoleServer) -> dict[str, str]:
    return {user: server.token(user) for user in ("admin", "viewer", "op")}


def call(
    server: ConsoleServer, path: str, token: str | None = None, body: dict | None = None, **headers: str
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON or text, headers in lower case) of one request; redirects are not followed."""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(server.url + path, data, headers, method="POST" if body else "GET")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as answer:
            status, raw, got = answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        status, raw, got = error.code, error.read(), dict(error.headers)
    got = {k.lower(): v for k, v in got.items()}
    if got.get("content-encoding") == "gzip":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    return status, json.loads(text) if got.get("content-type", "").startswith("application/json") else text, got


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_every_route_needs_an_airflow_login(server):
    for path in (f"{API}/products", f"{API}/products/sales/sales_orders_analytical", f"{API}/incidents"):
        status, answer, _ = call(server, path)
        assert (status, answer) == (401, {"detail": "Not authenticated"}), path
    status, _, _ = call(
        server, f"{API}/products/finance/revenue_metrics/outputs/daily_revenue/subscriptions", body={"consumer": "x"}
    )
    assert status == 401
    # a page sends the browser to Airflow's login, and back afterwards
    status, _, headers = call(server, "/datamesh/mesh?q=orders")
    assert status == 307
    assert headers["location"].startswith("/auth/login") and "datamesh%2Fmesh%3Fq%3Dorders" in headers["location"]


def test_search_answers_as_the_cli_does(server, tokens, catalog_db):
    status, hits, _ = call(server, f"{API}/products?q=customer&freshness=fresh&limit=5", tokens["viewer"])
    assert status == 200
    with closing(catalog_db.connect()) as conn:
        expected = search(conn, "customer", Filters(freshness="fresh"), 5)
    assert [(h["domain"], h["product"]) for h in hits] == [(h.domain, h.product) for h in expected]
    assert hits[0]["product"] == "customer_profiles" and hits[0]["owner_team"] == "customer_data"
    status, tagged, _ = call(server, f"{API}/products?tag=orders&classification=internal", tokens["viewer"])
    assert [f"{h['domain']}/{h['product']}" for h in tagged] == ["sales/sales_orders_analytical"]


def test_card_lineage_and_impact(server, tokens):
    token = tokens["viewer"]
    status, card, _ = call(server, f"{API}/products/customers/customer_profiles", token)
    assert status == 200 and card["owner_email"] == "customer-data@company.com"
    columns = {c["name"]: c["pii"] for o in card["outputs"] for c in o["columns"]}
    assert columns["customer_email"] == "email" and columns["customer_id"] is None
    status, graph, _ = call(server, f"{API}/products/finance/revenue_metrics/lineage?direction=up", token)
    assert status == 200 and graph["root"] == "finance/revenue_metrics"
    assert {
        "producer": "sales/sales_orders_analytical",
        "consumer": "finance/revenue_metrics",
        "reads": ["orders"],
    } in graph["edges"]
    assert "marketing/campaign_performance" not in {n["id"] for n in graph["nodes"]}
    status, impact, _ = call(server, f"{API}/products/sales/sales_orders_analytical/outputs/orders/impact", token)
    assert status == 200 and impact["major"] == 2
    assert {h["name"] for h in impact["hits"]} == {"finance/revenue_metrics", "marketing/campaign_performance"}
    assert impact["summary"].startswith("a breaking change to sales/sales_orders_analytical.orders hits 2 product(s)")
    status, quality, _ = call(server, f"{API}/products/customers/customer_profiles/quality", token)
    assert quality["scores"] == [80.0, 90.0] and quality["fresh"] is True
    status, runs, _ = call(server, f"{API}/products/customers/customer_profiles/runs?limit=1", token)
    assert [r["run_id"] for r in runs] == ["scheduled__2"]


@pytest.mark.parametrize(
    "path, message",
    [
        ("/products/nope/nothing", "no product nope/nothing in the catalog"),
        ("/products/nope/nothing/lineage", "no product nope/nothing in the catalog"),
        ("/products/sales/sales_orders_analytical/outputs/nope/impact", "no output sales/sales_orders_analytical.nope"),
        ("/products/nope/nothing/docs", "no product nope/nothing in the catalog"),
        ("/products/customers/customer_profiles/contract", "no ODCS contract for customers/customer_profiles"),
    ],
)
def test_unknown_names_are_404_with_a_message(server, tokens, path, message):
    status, answer, _ = call(server, API + path, tokens["viewer"])
    assert status == 404
    assert answer["detail"].startswith(message), answer


@pytest.mark.parametrize(
    "query, message",
    [
        ("min_score=lots", "malformed request: query.min_score: Input should be a valid number"),
        ("min_score=150", "search: the minimum quality score must be between 0 and 100"),
        ("classification=secret", "search: classification 'secret' is not one of public, internal"),
        ("freshness=old", "search: freshness must be one of fresh, stale"),
        ("q=%25%25", "search: '%%' has no word to search for"),
        ("limit=0", "malformed request: query.limit: Input should be greater than or equal to 1"),
    ],
)
def test_a_malformed_query_is_400_with_a_message(server, tokens, query, message):
    status, answer, _ = call(server, f"{API}/products?{query}", tokens["viewer"])
    assert status == 400
    assert answer["detail"].startswith(message), answer


def test_subscribing_needs_more_than_a_read_only_role(server, tokens):
    path = f"{API}/products/finance/revenue_metrics/outputs/daily_revenue/subscriptions"
    body = {"consumer": "churn_model", "contact": "ml@company.com", "purpose": "churn features"}
    status, answer, _ = call(server, path, tokens["viewer"], body)
    assert (status, answer) == (403, {"detail": "Forbidden"})
    status, answer, _ = call(server, path, tokens["op"], body)
    assert status == 201
    assert answer == {
        "consumer": "churn_model",
        "output": "finance/revenue_metrics.daily_revenue",
        "major": 1,
        "subscribed_by": "airflow:op",
    }
    _, card, _ = call(server, f"{API}/products/finance/revenue_metrics", tokens["viewer"])
    assert {"kind": "subscriber", "name": "churn_model", "output": "daily_revenue", "major": 1} in card["consumers"]
    status, answer, _ = call(
        server, f"{API}/products/finance/revenue_metrics/outputs/nope/subscriptions", tokens["op"], body
    )
    assert status == 404 and "has no output 'nope'; it has: daily_revenue" in answer["detail"]


def test_fab_viewer_may_read_but_not_subscribe():
    """Under the FAB auth manager (compose's), the routes' rights map to roles: read = assets GET,
    which every role has; subscribe = assets POST, which Viewer lacks."""
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride as Fab,
    )

    manager = FabAuthManager()
    viewer = SimpleNamespace(perms=set(Fab.VIEWER_PERMISSIONS))
    user = SimpleNamespace(perms=set(Fab.VIEWER_PERMISSIONS + Fab.USER_PERMISSIONS))
    assert manager.is_authorized_asset(method="GET", user=viewer)
    assert not manager.is_authorized_asset(method="POST", user=viewer)
    assert manager.is_authorized_asset(method="POST", user=user)


def test_dbt_docs_are_served_from_the_catalog(server, tokens, catalog_db):
    path = f"{API}/products/products/product_catalog/docs"
    status, answer, _ = call(server, path, tokens["viewer"])
    assert status == 404 and "built by `datamesh docs` (at deploy), never on request" in answer["detail"]
    with closing(catalog_db.connect()) as conn:
        store_docs_page(conn, "products", "product_catalog", "1.2.0", "<html><title>dbt Docs</title>é</html>")
    status, page, headers = call(server, path, tokens["viewer"], **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert page == "<html><title>dbt Docs</title>é</html>"
    status, page, headers = call(server, path, tokens["viewer"])
    assert status == 200 and "content-encoding" not in headers and "é" in page


def test_openapi_documents_the_api(server, tokens):
    status, spec, _ = call(server, "/datamesh/openapi.json")
    assert status == 200
    assert {
        "/api/products",
        "/api/products/{domain}/{product}",
        "/api/products/{domain}/{product}/lineage",
        "/api/products/{domain}/{product}/outputs/{output}/impact",
        "/api/products/{domain}/{product}/outputs/{output}/subscriptions",
        "/api/incidents",
        "/api/compliance",
        "/api/products/{domain}/{product}/docs",
        "/api/products/{domain}/{product}/contract",
    } <= set(spec["paths"])
    assert "/mesh" not in spec["paths"]  # pages are not API


def test_pages_render_the_catalog(server, tokens):
    token = tokens["viewer"]
    status, html, _ = call(server, "/datamesh/mesh?q=customer", token)
    assert status == 200 and "<title>Data mesh</title>" in html
    assert 'href="/datamesh/products/customers/customer_profiles"' in html
    assert "Neighbourhood of customers/customer_profiles" in html
    status, html, _ = call(server, "/datamesh/products/customers/customer_profiles", token)
    assert status == 200
    assert '<span class="badge pii">PII: email</span>' in html
    assert 'aria-label="data age against the freshness SLA"' in html
    assert 'href="/dags/customers__customer_profiles" target="_top"' in html
    status, html, _ = call(server, "/datamesh/dags/customers__customer_profiles", token)
    assert status == 200 and "<title>customers/customer_profiles</title>" in html
    status, html, _ = call(server, "/datamesh/products/nope/nothing", token)
    assert status == 404 and "no product nope/nothing in the catalog" in html
    status, html, _ = call(server, "/datamesh/compliance", token)
    assert status == 200 and "<title>Compliance" in html


def test_the_plugin_module_imports_nothing_heavy():
    """Every Airflow task imports plugins: the console's FastAPI app, its templates and the database
    driver wait for the api-server's first request."""
    code = (
        "import sys, airflow.plugins_manager\n"
        "before = set(sys.modules)\n"
        "import generator.plugin\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if not m.startswith('generator')))\n"
        "print(sorted(m for m in new if m.startswith('generator')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    others, ours = done.stdout.splitlines()
    assert others == "[]"
    assert ours == "['generator', 'generator.plugin', 'generator.plugin.airflow_plugin']"
