"""`datamesh diff --against <git ref>`: the gate's compatibility rules in CI, on a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from generator.catalog import store
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse
from tests.catalog_helpers import register_run
from tests.test_cli import DATAMESH, REPO, datamesh

ORDERS = "dbt/commerce/orders/data_product.yaml"


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture
def mesh_repo(tmp_path: Path) -> Path:
    """The example mesh's specs and policies, committed on `main` of a fresh git repository."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("target", "dbt_packages", "logs"))
    shutil.copytree(REPO / "policies", root / "policies")
    (root / "dags").mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the mesh")
    return root


def edit(root: Path, path: str, old: str, new: str) -> None:
    spec = root / path
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))


def test_no_change_since_the_ref_exits_0(mesh_repo: Path) -> None:
    done = datamesh("diff", "--against", "main", root=mesh_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no product spec changed its contract" in done.stdout


def test_a_type_change_without_a_major_bump_exits_1_naming_the_consumer(mesh_repo: Path) -> None:
    edit(mesh_repo, ORDERS, "type: numeric(12,2)", "type: numeric(14,2)")
    done = datamesh("diff", "--against", "main", root=mesh_repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "blocking   column orders_fact.total_amount: type numeric(12,2) -> numeric(14,2)" in done.stdout
    assert "hits: sales/sales_orders_analytical" in done.stdout
    assert "set version to 2.0.0" in done.stdout  # the gate's own policy message

    report = json.loads(datamesh("diff", "--against", "main", "--format", "json", root=mesh_repo).stdout)
    assert report["summary"]["blocking"] == 1
    (product,) = report["products"]
    assert (product["product"], product["status"]) == ("commerce/orders", "changed")
    (change,) = product["changes"]
    assert change["kind"] == "type_changed" and change["verdict"] == "blocking"
    assert change["consumers"] == ["sales/sales_orders_analytical"]

    junit = datamesh("diff", "--against", "main", "--format", "junit", root=mesh_repo)
    assert junit.returncode == 1
    suites = ET.fromstring(junit.stdout)
    assert suites.get("failures") == "1"
    failure = suites.find("./testsuite/testcase/failure")
    assert failure is not None and "sales/sales_orders_analytical" in failure.get("message", "")


def test_the_same_change_with_a_major_bump_exits_0_listing_it_as_allowed(mesh_repo: Path) -> None:
    edit(mesh_repo, ORDERS, "type: numeric(12,2)", "type: numeric(14,2)")
    edit(mesh_repo, ORDERS, "version: 1.0.0", "version: 2.0.0")
    # The consumer still reads v1, so the producer keeps serving it for a while.
    (mesh_repo / ORDERS).write_text(
        (mesh_repo / ORDERS).read_text()
        + "deprecations:\n  - {major: 1, serve_until: 2030-01-31, note: read v2}\n"
    )
    done = datamesh("diff", "--against", "main", "--format", "json", root=mesh_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    (change,) = json.loads(done.stdout)["products"][0]["changes"]
    assert (change["kind"], change["verdict"], change["breaking"]) == ("type_changed", "allowed", True)
    assert change["consumers"] == ["sales/sales_orders_analytical"]  # still on v1: told to move


def test_compatible_changes_and_new_products_pass_removed_ones_block(mesh_repo: Path) -> None:
    edit(
        mesh_repo,
        ORDERS,
        "      - name: order_id\n",
        "      - name: note\n        type: text\n      - name: order_id\n",
    )
    shutil.copytree(mesh_repo / "dbt/commerce/orders", mesh_repo / "dbt/commerce/returns")
    edit(mesh_repo, "dbt/commerce/returns/data_product.yaml", "name: orders\n", "name: returns\n")
    done = datamesh("diff", "--against", "main", "--format", "json", root=mesh_repo)
    assert done.returncode == 0, done.stdout + done.stderr
    products = {p["product"]: p for p in json.loads(done.stdout)["products"]}
    assert products["commerce/returns"]["status"] == "added"
    (added,) = products["commerce/orders"]["changes"]
    assert (added["kind"], added["verdict"]) == ("column_added_nullable", "compatible")

    git(mesh_repo, "add", "-A")
    git(mesh_repo, "commit", "-q", "-m", "returns")
    shutil.rmtree(mesh_repo / "dbt/commerce/returns")
    done = datamesh("diff", "--against", "HEAD", root=mesh_repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "commerce/returns (removed, 1.0.0 -> -)" in done.stdout


def test_an_unknown_ref_is_bad_input(mesh_repo: Path) -> None:
    done = datamesh("diff", "--against", "origin/nowhere", root=mesh_repo)
    assert done.returncode == 2
    assert "'origin/nowhere' is not a commit" in done.stderr


def test_with_subscribers_the_catalogs_readers_are_named_too(mesh_repo: Path, warehouse: Warehouse) -> None:
    orders = load_mesh(mesh_repo).select("commerce/orders")[0].spec
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        register_run(conn, orders, "diff-test")
        store.subscribe(conn, "churn_dashboard", "commerce", "orders", "orders_fact", 1, None, None)
    finally:
        conn.close()
    edit(mesh_repo, ORDERS, "type: numeric(12,2)", "type: numeric(14,2)")
    env = {**os.environ, **warehouse.env()}
    done = subprocess.run(
        [DATAMESH, "--root", str(mesh_repo), "diff", "--against", "main", "--subscribers", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (change,) = json.loads(done.stdout)["products"][0]["changes"]
    assert change["consumers"] == ["sales/sales_orders_analytical", "subscriber:churn_dashboard"]
