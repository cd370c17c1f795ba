"""`datamesh docs`: a product's dbt docs page carries the catalog's owner and classification, and is served."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from generator.catalog import store
from generator.dev.demo_data import seed_operational_data
from generator.platform.publish import publish
from generator.platform.setup import setup_platform
from generator.runtime import dbt_runner
from generator.spec.mesh import load_mesh
from generator.warehouse.connection import Warehouse
from tests.catalog_helpers import register_run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DATAMESH = str(Path(sys.executable).with_name("datamesh"))


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "__pycache__")
    for folder in ("dbt", "dags", "policies"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_docs_page_shows_owner_classification_and_pii(repo_copy: Path, warehouse: Warehouse) -> None:
    done = subprocess.run(
        [DATAMESH, "--root", str(repo_copy), "docs", "customers/customer_profiles"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = repo_copy / ".datamesh/docs/customers__customer_profiles/index.html"
    assert f"docs: {page}" in done.stdout
    html = page.read_text()
    # dbt inlines the manifest: the model's meta as the spec (and the catalog) state it.
    for fact in ('"team": "customer_data"', '"classification": "confidential"', '"pii": "email"'):
        assert fact.replace(" ", "") in html.replace(" ", ""), fact
    assert "customers_dim" in html
    assert (repo_copy / ".datamesh/docs/index.html").exists()
    # ... and the same page in the catalog, where the console's api-servers serve it from
    from contextlib import closing

    from generator.catalog.docs_pages import load_docs_page

    with closing(warehouse.connect()) as conn:
        stored = load_docs_page(conn, "customers", "customer_profiles")
    assert stored is not None and stored.html == html and stored.version == "1.0.0"


def test_docs_are_served_on_localhost(repo_copy: Path, warehouse: Warehouse) -> None:
    port = free_port()
    server = subprocess.Popen(
        [DATAMESH, "--root", str(repo_copy), "docs", "products/product_catalog", "--serve", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        body = ""
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/products__product_catalog/index.html"
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = response.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                time.sleep(1)
        assert "products_dim" in body
    finally:
        server.terminate()
        server.wait(timeout=30)


def publish_example_mesh(root: Path, warehouse: Warehouse) -> None:
    """Every example product built by dbt on the demo data and published, producers first."""
    mesh = load_mesh(root)
    conn = warehouse.connect(autocommit=True)
    try:
        seed_operational_data(conn)
    finally:
        conn.close()
    setup_platform(warehouse, mesh.products)
    for entry in mesh.products:
        dbt_runner.run(entry.project_dir, warehouse)
        conn = warehouse.connect()
        try:
            publish(conn, entry.spec, roles_must_exist=False)  # the readers' roles are not the point
        finally:
            conn.close()


def test_docs_describe_the_published_outputs_with_their_warehouse_types(
    repo_copy: Path, warehouse: Warehouse
) -> None:
    """catalog.json is built against the published schema: every output, every column, typed. A
    subscriber registered in the catalog shows as an exposure of the docs (never of the render)."""
    publish_example_mesh(repo_copy, warehouse)
    profiles = load_mesh(repo_copy).select("customers/customer_profiles")[0].spec
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        register_run(conn, profiles, "docs-test")
        store.subscribe(conn, "Churn {{ board }}", "customers", "customer_profiles", "customers_dim", None,
                        "crm-team@company.com", "weekly churn review")
    finally:
        conn.close()
    try:
        done = subprocess.run(
            [DATAMESH, "--root", str(repo_copy), "docs"], capture_output=True, text=True, timeout=900, check=False
        )
    finally:
        conn = warehouse.connect()
        try:  # other tests of the session share this catalog
            store.unsubscribe(conn, "Churn {{ board }}", "customers", "customer_profiles", "customers_dim")
        finally:
            conn.close()
    assert done.returncode == 0, done.stdout + done.stderr
    for entry in load_mesh(repo_copy).products:
        spec = entry.spec
        docs = repo_copy / ".datamesh/docs" / spec.key  # dbt's artifacts are kept beside the page
        nodes = json.loads((docs / "catalog.json").read_text())["nodes"]
        for output in spec.outputs:
            node = nodes[f"model.{spec.key}.{output.name}.v{spec.major}"]
            assert node["metadata"]["schema"] == spec.published_schema
            assert node["metadata"]["name"] == output.name
            assert node["metadata"]["type"] == "VIEW"  # what consumers read
            columns = {name: column["type"] for name, column in node["columns"].items()}
            assert list(columns) == [c.name for c in output.columns], spec.key
            assert all(columns.values()), columns
    project = load_mesh(repo_copy).select("customers/customer_profiles")[0].project_dir
    manifest = repo_copy / ".datamesh/docs/customers__customer_profiles/manifest.json"
    exposures = json.loads(manifest.read_text())["exposures"]
    churn = exposures["exposure.customers__customer_profiles.subscriber__churn_board"]
    assert churn["label"] == "Churn {{ board }}" and churn["owner"]["name"] == "crm-team@company.com"
    assert churn["depends_on"]["nodes"] == ["model.customers__customer_profiles.customers_dim.v1"]
    assert not (project / "models" / "_datamesh_subscribers.yml").exists()  # docs only, then gone
