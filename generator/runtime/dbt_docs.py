"""`datamesh docs`: each product's dbt docs as one static page, and a local server for them.

`dbt docs generate --static` writes static_index.html (in a scratch target folder), a single file
with the manifest and the warehouse catalog inlined, readable from disk. It runs on the profile's `docs` target, whose
schema is the product's published one (`<key>__v<major>`): the views consumers read, under the
outputs' names, so catalog.json has every output with its warehouse types (the build schema is
renamed away by each publish). Before the first publish the catalog is empty. The owner and
classification are in each model's `meta` already (render_dbt puts the spec's, which are the
catalog's). The pages are copied to .datamesh/docs/<domain>__<product>/index.html, where the mesh
report links to them, with dbt's manifest.json and catalog.json beside them (for tools that ingest
dbt artifacts), and stored in the catalog (table docs_pages), where the Airflow console serves
them from: this command is the build step, run at deploy time, so no api-server runs dbt on a request.

The consuming products of the mesh are exposures of the rendered project already; consumers outside
the mesh (the catalog's subscriptions) are known only to the catalog, so they are added here, for
the docs only: a YAML file of exposures written beside the models before `dbt docs generate` and
removed after it, never rendered (a render does not read the warehouse).
"""

from __future__ import annotations

import functools
import http.server
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import yaml

from generator.layout import CATALOG_SCHEMA, DOCS_DIR, docs_page
from generator.render.dbt_project import DOCS_TARGET, jinja_literal
from generator.spec.mesh import ProductEntry
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

SUBSCRIBERS_FILE = "models/_datamesh_subscribers.yml"  # exists only while `dbt docs generate` runs
ARTIFACTS = ("manifest.json", "catalog.json")  # copied beside the page


def generate(root: Path, entry: ProductEntry, warehouse: Warehouse) -> Path:
    """Generate one product's static docs page; returns its path. RunFailed when dbt fails."""
    from generator.runtime import dbt_runner

    dbt_runner.ensure_packages(entry.project_dir, warehouse)
    page = docs_page(root, entry.spec.key)
    page.parent.mkdir(parents=True, exist_ok=True)
    extra = entry.project_dir / SUBSCRIBERS_FILE
    exposures = subscriber_exposures(warehouse, entry.spec)
    if exposures:
        extra.write_text(yaml.safe_dump({"version": 2, "exposures": exposures}, sort_keys=False), encoding="utf-8")
    try:
        with dbt_runner.scratch_dir() as target:
            dbt_runner.invoke(
                entry.project_dir, warehouse, ["docs", "generate", "--static"], target_dir=target, target=DOCS_TARGET
            )
            shutil.copyfile(target / "static_index.html", page)
            for artifact in ARTIFACTS:
                shutil.copyfile(target / artifact, page.parent / artifact)
    finally:
        extra.unlink(missing_ok=True)
    store_in_catalog(warehouse, entry, page)
    return page


def subscriber_exposures(warehouse: Warehouse, spec: DataProduct) -> list[dict[str, Any]]:
    """One dbt exposure per catalog subscriber of the product's current major. None when there is
    no catalog yet, or the connecting role may not read it (the docs are built all the same)."""
    try:
        conn = warehouse.connect()
    except psycopg2.Error as exc:
        log.warning("no catalog subscribers in the docs: %s", exc)
        return []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.subscriptions",))
            if cur.fetchone()[0] is None:
                return []
            cur.execute(
                f"""SELECT consumer, array_agg(output ORDER BY output), max(contact), max(purpose)
                      FROM {CATALOG_SCHEMA}.subscriptions
                     WHERE domain = %s AND product = %s AND major = %s
                     GROUP BY consumer ORDER BY consumer""",
                (spec.domain, spec.name, spec.major),
            )
            rows = cur.fetchall()
    except psycopg2.Error as exc:
        log.warning("no catalog subscribers in the docs: %s", exc)
        return []
    finally:
        conn.close()
    exposures: list[dict[str, Any]] = []
    taken: set[str] = set()
    for consumer, outputs, contact, purpose in rows:
        name = "subscriber__" + (re.sub(r"[^a-z0-9]+", "_", consumer.lower()).strip("_") or "unnamed")
        while name in taken:  # two names that differ only in punctuation
            name += "_"
        taken.add(name)
        known = [o for o in outputs if spec.output(o) is not None]
        if not known:
            continue
        exposures.append(
            {
                "name": name,
                "label": jinja_literal(consumer),
                "type": "application",
                "description": jinja_literal(purpose or f"{consumer}: a subscriber registered in the catalog."),
                "owner": {"name": jinja_literal(contact or consumer)},
                "depends_on": [f"ref('{o}', v={spec.major})" for o in known],
                "config": {"meta": {"datamesh_subscriber": jinja_literal(consumer)}},
            }
        )
    return exposures


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
