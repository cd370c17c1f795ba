"""`datamesh docs`: each product's dbt docs as one static page, and a local server for them.

`dbt docs generate --static` writes target/static_index.html, a single file with the manifest and
the warehouse catalog inlined, readable from disk. It runs on the profile's `docs` target, whose
schema is the product's published one (`<key>__v<major>`): the views consumers read, under the
outputs' names, so catalog.json has every output with its warehouse types (the build schema is
renamed away by each publish). Before the first publish the catalog is empty. The owner and
classification are in each model's `meta` already (render_dbt puts the spec's, which are the
catalog's). The pages are copied to .datamesh/docs/<domain>__<product>/index.html, where the mesh
report links to them.
"""

from __future__ import annotations

import functools
import http.server
import shutil
from collections.abc import Callable
from pathlib import Path

from generator.layout import DOCS_DIR, docs_page
from generator.render.dbt_project import DOCS_TARGET
from generator.spec.mesh import ProductEntry
from generator.warehouse.connection import Warehouse


def generate(root: Path, entry: ProductEntry, warehouse: Warehouse) -> Path:
    """Generate one product's static docs page; returns its path. RunFailed when dbt fails."""
    from generator.runtime import dbt_runner

    dbt_runner.deps(entry.project_dir, warehouse)
    dbt_runner.invoke(entry.project_dir, warehouse, ["docs", "generate", "--static"], target=DOCS_TARGET)
    page = docs_page(root, entry.spec.key)
    page.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(entry.project_dir / "target" / "static_index.html", page)
    return page


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
