"""`--format json` through the real `datamesh` command: each document parses and has the keys
docs/interop.md promises, on the example mesh registered in a catalog of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from generator.governance import compliance
from generator.governance.policies import evaluate_spec, load_policies
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse
from tests.catalog_helpers import register_example_mesh
from tests.test_cli import DATAMESH, REPO

pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn


@pytest.fixture
def catalog(empty_db: Warehouse, conn) -> Warehouse:  # type: ignore[no-untyped-def]
    register_example_mesh(conn, REPO)
    for entry in load_mesh(REPO).products:
        compliance.record(conn, entry.spec, "static", evaluate_spec(load_policies(REPO, entry.spec.domain), entry.spec))
    return empty_db


def as_json(warehouse: Warehouse | None, *args: str, code: int = 0) -> Any:
    env = {**os.environ, "NO_COLOR": "1", **(warehouse.env() if warehouse else {})}
    done = subprocess.run(
        [DATAMESH, "--root", str(REPO), *args, "--format", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == code, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_search(catalog: Warehouse) -> None:
    found = as_json(catalog, "search", "orders")
    assert found["query"] == "orders"
    hit = next(h for h in found["hits"] if h["key"] == "commerce/orders")
    assert {"domain", "product", "version", "owner_team", "description", "classification", "tags", "rank",
            "freshness_hours", "last_success_at", "age_hours", "fresh", "quality_score"} <= hit.keys()
    assert hit["fresh"] is True and isinstance(hit["last_success_at"], str)


def test_show(catalog: Warehouse) -> None:
    card = as_json(catalog, "show", "sales/sales_orders_analytical")
    assert card["key"] == "sales/sales_orders_analytical"
    assert card["published_schema"] == "sales__sales_orders_analytical__v2"
    (orders,) = card["outputs"]
    assert orders["name"] == "orders"
    order_id = {"name": "order_id", "type": "text", "description": "Unique order identifier", "pii": None}
    assert order_id in orders["columns"]
    assert "FROM sales__sales_orders_analytical__v2.orders" in orders["sample_query"]
    assert card["runs"][0]["outcome"] == "success" and isinstance(card["runs"][0]["ended_at"], str)
    assert "commerce/orders.orders_fact" in card["inputs"]
    expected = {"owner_team", "owner_email", "sla", "consumers", "changelog", "incidents", "access", "quality_trend"}
    assert expected <= card.keys()


def test_lineage(catalog: Warehouse) -> None:
    graph = as_json(catalog, "lineage", "commerce/orders")
    assert graph["target"] == "commerce/orders" and graph["level"] == "product"
    assert "sales/sales_orders_analytical" in graph["downstream"]
    assert "customers/customer_profiles" in graph["upstream"]
    ids = {n["id"] for n in graph["nodes"]}
    assert {"commerce/orders", "sales/sales_orders_analytical"} <= ids
    assert {"from": "commerce/orders", "to": "sales/sales_orders_analytical"}.items() <= next(
        e for e in graph["edges"] if e["to"] == "sales/sales_orders_analytical" and e["from"] == "commerce/orders"
    ).items()
    only_up = as_json(catalog, "lineage", "commerce/orders", "--up")
    assert only_up["downstream"] == []


def test_impact(catalog: Warehouse) -> None:
    found = as_json(catalog, "impact", "commerce/orders.orders_fact")
    assert (found["output"], found["major"]) == ("commerce/orders.orders_fact", 1)
    hit = next(h for h in found["hits"] if h["name"] == "sales/sales_orders_analytical")
    assert hit == {"kind": "product", "name": "sales/sales_orders_analytical", "depth": 1, "path": hit["path"]}
    assert hit["path"][0] == "commerce/orders.orders_fact"
    assert isinstance(found["summary"], str) and found["other_majors"] == {}


def test_compliance(catalog: Warehouse) -> None:
    report = as_json(catalog, "compliance", "report")
    product = next(p for p in report["products"] if (p["domain"], p["product"]) == ("commerce", "orders"))
    assert {"gate", "static", "scores"} <= product.keys()
    assert product["static"]["moment"] == "static"


def test_validate(tmp_path: Path) -> None:
    report = as_json(None, "validate")
    first = report["products"][0]
    assert {"product", "version", "spec", "ok", "findings"} <= first.keys()
    assert {p["product"] for p in report["products"]} >= {"commerce/orders", "sales/sales_orders_analytical"}


def test_validate_of_a_broken_spec_lists_its_problems_as_json(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    shutil.copytree(REPO / "policies", root / "policies")
    spec = root / "dbt/sales/sales_orders_analytical/data_product.yaml"
    spec.write_text(spec.read_text().replace("classification: internal", "classification: secret"))
    done = subprocess.run(
        [DATAMESH, "--root", str(root), "validate", "--format", "json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    problem = json.loads(done.stdout)["problems"][0]  # then its consumers' missing input
    assert problem["file"] == "dbt/sales/sales_orders_analytical/data_product.yaml"
    assert problem["path"] == "classification" and problem["line"]
