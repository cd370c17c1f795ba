"""`datamesh docs`: each product's dbt docs as one static page, and a local server for them.

`dbt docs generate --static` writes static_index.html (in a scratch target folder), a single file
with the manifest and the warehouse catalog inlined, readable from disk. The owner and
classification are in each model's `meta` already (render_dbt puts the spec's, which are the
catalog's). The pages are copied to .datamesh/docs/<domain>__<product>/index.html, where the mesh
report links to them, and stored in the catalog (table docs_pages), where the Airflow console serves
them from: this command is the build step, run at deploy time, so no api-server runs dbt on a request.
"""

from __future__ import annotations

import functools
import http.server
import shutil
from collections.abc import Callable
from pathlib import Path

from generator.layout import DOCS_DIR, docs_page
from generator.spec.mesh import ProductEntry
from generator.warehouse.connection import Warehouse


def generate(root: Path, entry: ProductEntry, warehouse: Warehouse) -> Path:
    """Generate one product's static docs page; returns its path. RunFailed when dbt fails."""
    from generator.runtime import dbt_runner

    dbt_runner.ensure_packages(entry.project_dir, warehouse)
    page = docs_page(root, entry.spec.key)
    page.parent.mkdir(parents=True, exist_ok=True)
    with dbt_runner.scratch_dir() as target:
        dbt_runner.invoke(entry.project_dir, warehouse, ["docs", "generate", "--static"], target_dir=target)
        shutil.copyfile(target / "static_index.html", page)
    store_in_catalog(warehouse, entry, page)
    return page


def store_in_catalog(warehouse: Warehouse, entry: ProductEntry, page: Path) -> None:
    """Put the page in the catalog for the console (every api-server replica reads it there)."""
    from contextlib import closing

    from generator.catalog import store
    from generator.catalog.docs_pages import store_docs_page

    with closing(warehouse.connect()) as conn:
        store.ensure_current(conn)
        spec = entry.spec
        store_docs_page(conn, spec.domain, spec.name, spec.version, page.read_text(encoding="utf-8"))


def generate_all(
    root: Path, entries: list[ProductEntry], warehouse: Warehouse, progress: Callable[[ProductEntry], None]
) -> list[Path]:
    pages = []
    for entry in entries:
        pages.append(generate(root, entry, warehouse))
        progress(entry)
    return pages


def write_index(root: Path, keys: list[str]) -> Path:
    """A plain list of the products' docs pages, so the server's root shows something useful."""
    from html import escape

    items = "\n".join(f'<li><a href="{escape(k)}/index.html">{escape(k)}</a></li>' for k in sorted(keys))
    index = root / DOCS_DIR / "index.html"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(
        f"<!doctype html><meta charset='utf-8'><title>dbt docs</title><h1>dbt docs</h1><ul>{items}</ul>\n",
        encoding="utf-8",
    )
    return index


def serve(root: Path, port: int) -> None:
    """Serve .datamesh/docs on localhost until interrupted."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / DOCS_DIR))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()
