"""Each catalog command's output on the example mesh, through the CLI, against real PostgreSQL;
and the static HTML report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from catalog_helpers import execute, register_example_mesh
from click.testing import CliRunner

from generator.catalog.incidents import record_incident
from generator.cli.main import cli
from generator.report.svg import sparkline_svg
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration
pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn


@pytest.fixture
def mesh_db(empty_db: Warehouse, conn, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    register_example_mesh(conn, repo_root)
    monkeypatch.setenv("PGDATABASE", empty_db.dbname)  # the CLI finds the warehouse by PG* variables
    return empty_db


def datamesh(root: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_search_shows_a_ranked_table(mesh_db, repo_root):
    lines = datamesh(repo_root, "search", "customer").splitlines()
    assert lines[0].split()[:4] == ["product", "version", "owner", "freshness"]
    assert lines[2].split()[:6] == [
        "customers/customer_profiles",
        "1.0.0",
        "customer_data",
        "ok",
        "0m/24.0h",
        "90",
    ]
    assert {line.split()[0] for line in lines[3:]} == {"commerce/orders", "sales/sales_orders_analytical"}
    filtered = datamesh(repo_root, "search", "--tag", "orders", "--classification", "internal", "--fresh")
    assert [line.split()[0] for line in filtered.splitlines()[2:]] == ["sales/sales_orders_analytical"]


def test_show_prints_the_product_card(mesh_db, repo_root):
    card = datamesh(repo_root, "show", "customers/customer_profiles")
    assert "owner: customer_data <customer-data@company.com>" in card
    assert re.search(r"PK customer_id\s+text\s+Customer identifier", card)
    assert re.search(r"customer_email\s+text\s+PII:email Contact email address", card)
    assert "now: ok 0m/24.0h" in card
    assert "quality trend: ▇█  latest 90" in card
    assert "product    commerce/orders  reads customers_dim v1" in card
    assert "product    sales/sales_orders_analytical  reads customers_dim v1" in card
    assert "FROM customers__customer_profiles__v1.customers_dim" in card
    assert card.count("success") == 2
    assert "incidents (failed runs, missed freshness deadlines):\n  none" in card


def test_show_lists_the_products_latest_incidents(mesh_db, conn, repo_root):
    record_incident(conn, "failure", "customers", "customer_profiles", "manual__1", "dbt_test failed")
    record_incident(conn, "sla_miss", "customers", "customer_profiles", "scheduled__2", "not done 24 h after")
    record_incident(conn, "failure", "commerce", "orders", "manual__3", "someone else's")
    card = datamesh(repo_root, "show", "customers/customer_profiles")
    listed = card.split("incidents (failed runs, missed freshness deadlines):\n", 1)[1].split("\n\n")[0]
    lines = listed.splitlines()
    assert [line.split()[2:4] for line in lines] == [["sla_miss", "scheduled__2"], ["failure", "manual__1"]]
    assert lines[0].endswith("not done 24 h after")


def test_lineage_tree_and_graph_of_the_example_diamond(mesh_db, repo_root):
    # customers reaches sales twice: directly and through commerce/orders
    down = datamesh(repo_root, "lineage", "customers/customer_profiles", "--down")
    assert down.splitlines()[:6] == [
        "downstream (read by):",
        "customers/customer_profiles 1.0.0",
        "├── commerce/orders 1.0.0  [customers_dim]",
        "│   └── sales/sales_orders_analytical 2.1.0  [orders_fact]",
        "│       ├── finance/revenue_metrics 1.0.0  [orders]",
        "│       └── marketing/campaign_performance 1.0.0  [orders]",
    ]
    assert "└── sales/sales_orders_analytical 2.1.0  [customers_dim]  (see above)" in down
    mermaid = datamesh(repo_root, "lineage", "finance/revenue_metrics", "--format", "mermaid")
    assert mermaid.startswith("flowchart LR") and "marketing" not in mermaid  # only its own lineage
    dot = datamesh(repo_root, "lineage", "sales/sales_orders_analytical.orders", "--format", "graphviz")
    assert '"sales/sales_orders_analytical.orders" -> "finance/revenue_metrics.daily_revenue";' in dot


def test_a_subscriber_shows_in_impact_and_lineage(mesh_db, repo_root):
    said = datamesh(
        repo_root,
        "subscribe",
        "churn_model",
        "finance/revenue_metrics.daily_revenue",
        "--contact",
        "ml@company.com",
    )
    assert said.startswith("subscribed churn_model to finance/revenue_metrics.daily_revenue v1")
    impact = datamesh(repo_root, "impact", "sales/sales_orders_analytical.orders")
    assert impact.splitlines()[0] == (
        "a breaking change to sales/sales_orders_analytical.orders hits 2 product(s): "
        "finance/revenue_metrics, marketing/campaign_performance; 1 subscriber(s): churn_model"
    )
    assert "churn_model (subscriber)  [daily_revenue v1]" in datamesh(
        repo_root, "lineage", "finance/revenue_metrics"
    )
    result = CliRunner().invoke(
        cli, ["--root", str(repo_root), "subscribe", "x", "finance/revenue_metrics.nope"]
    )
    assert "has no output 'nope'; it has: daily_revenue" in str(result.exception)


def test_report_is_one_static_page_with_every_product(mesh_db, conn, repo_root, tmp_path):
    execute(
        conn,
        "UPDATE datamesh_catalog.runs SET ended_at = now() - interval '3 hours' WHERE domain = 'finance'",
    )  # its SLA is 1 h: stale
    record_incident(conn, "sla_miss", "finance", "revenue_metrics", "scheduled__1", "not done <in time>")
    out = tmp_path / "report.html"
    said = datamesh(repo_root, "report", "-o", str(out))
    assert f"report: {out}" in said
    html = out.read_text()
    for key in (
        "commerce/orders",
        "customers/customer_profiles",
        "finance/revenue_metrics",
        "marketing/campaign_performance",
        "products/product_catalog",
        "sales/sales_orders_analytical",
    ):
        assert f"<h3>{key} " in html
    assert "<b>6</b> products in <b>6</b> domains" in html and "<b>5</b> fresh within their SLA" in html
    assert '<span class="badge bad">STALE 3.0h/1.0h</span>' in html
    assert "sales_analytics &lt;sales-analytics@company.com&gt;" in html
    assert html.count("<svg") >= 1 + 6 + 6  # the mesh, each product's lineage, each quality trend
    assert 'href="#sales__sales_orders_analytical"' in html  # graph nodes link to the cards
    assert ".datamesh/docs/finance__revenue_metrics/index.html" in html
    # the latest incident on the product's card, its text escaped; the others have none
    assert '<span class="badge bad">sla_miss</span>' in html and "not done &lt;in time&gt;" in html
    assert html.count("<tr><td>incidents</td><td><span class=\"muted\">none</span>") == 5
    # readable without a server or a network: no scripts, no remote resources
    assert "<script" not in html and not re.search(r"(src|href)=\"https?://", html)


@pytest.mark.parametrize("scores", [[90.0], [100.0, 40.0, 75.0], [0.0, 100.0]])
def test_quality_trend_stays_inside_its_box(scores):
    svg = sparkline_svg(scores, width=120, height=28)
    points = re.search(r'points="([^"]+)"', svg)[1].split()
    assert len(points) == len(scores)
    dot = re.search(r'cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"', svg)
    x, y, r = map(float, dot.groups())
    assert (x, y) == tuple(map(float, points[-1].split(",")))  # the dot marks the latest score
    assert r <= x <= 120 - r and r <= y <= 28 - r  # drawn whole, not cut by the edge
    assert x > 60  # the latest score is at the right end, a single one included
