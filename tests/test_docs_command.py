"""`datamesh docs`: a product's dbt docs page carries the catalog's owner and classification, and is served."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from generator.warehouse.connection import Warehouse

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
