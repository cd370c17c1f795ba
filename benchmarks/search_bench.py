"""How fast `datamesh search` answers on a catalog of 10,000 products.

Fills a scratch database with N synthetic products (3 outputs of 8 columns each, 5 runs each, a
quality score on every run) through the catalog's own migrations and search-document function,
then times `search()` — the same call the CLI makes — over a mix of queries: words only, words with
filters, filters only. Prints p50 and p95 per kind, in milliseconds.

    .venv/bin/python benchmarks/search_bench.py [--products 10000] [--repeat 20]

Uses the PG* variables' server if PGHOST is set, else an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from generator.catalog import store  # noqa: E402
from generator.catalog.search import Filters, search  # noqa: E402
from generator.warehouse.connection import Warehouse, from_environment, start_embedded, stop_embedded  # noqa: E402

DATABASE = "datamesh_search_bench"
WORDS = [
    "customer",
    "order",
    "revenue",
    "campaign",
    "invoice",
    "shipment",
    "refund",
    "inventory",
    "payment",
    "session",
    "churn",
    "forecast",
    "ledger",
    "supplier",
    "ticket",
    "subscription",
]

QUERIES: list[tuple[str, str, Filters]] = [
    ("words", "customer", Filters()),
    ("words", "order refund", Filters()),
    ("words", "invent", Filters()),  # a prefix
    ("words", "payment ledger amount", Filters()),
    ("words+filters", "customer", Filters(domain="domain_7")),
    ("words+filters", "revenue", Filters(classification="confidential", min_quality=80)),
    ("words+filters", "order", Filters(tag="tag_3", freshness="fresh")),
    ("filters only", "", Filters(min_quality=85)),
    ("filters only", "", Filters(domain="domain_12", freshness="stale")),
]


def fill(conn, products: int) -> None:  # type: ignore[no-untyped-def]
    """Synthetic products, set-based in SQL (seconds, not minutes); words drawn from WORDS."""
    words = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"  # constants of this file, not input
    with conn.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO datamesh_catalog.products (domain, name, current_version, description, owner_team,
                owner_email, classification, sla, tags, published_schema, spec)
            SELECT 'domain_' || (i %% 40), 'product_' || i || '_' || ({words})[1 + i %% 16],
                   '1.' || (i %% 7) || '.0',
                   'Daily ' || ({words})[1 + i %% 16] || ' and ' || ({words})[1 + (i * 7) %% 16]
                       || ' facts for team ' || i,
                   'team_' || (i %% 90), 'team' || (i %% 90) || '@company.com',
                   (ARRAY['public', 'internal', 'confidential', 'restricted'])[1 + i %% 4],
                   jsonb_build_object('freshness_hours', 1 + i %% 48),
                   ARRAY['tag_' || (i %% 25), ({words})[1 + (i * 3) %% 16]],
                   'domain_' || (i %% 40) || '__product_' || i || '__v1', '{{}}'
            FROM generate_series(1, %s) AS i""",
            (products,),
        )
        cur.execute(f"""
            INSERT INTO datamesh_catalog.outputs (domain, product, name, position, description)
            SELECT p.domain, p.name, 'output_' || o, o,
                   'One row per ' || ({words})[1 + (o * 5 + length(p.name)) % 16]
            FROM datamesh_catalog.products p, generate_series(1, 3) AS o""")
        cur.execute(f"""
            INSERT INTO datamesh_catalog.columns (domain, product, output, name, position, type)
            SELECT o.domain, o.product, o.name,
                   ({words})[1 + (c * 11 + length(o.product)) % 16] || '_' || c || '_amount', c, 'text'
            FROM datamesh_catalog.outputs o, generate_series(1, 8) AS c""")
        cur.execute("""
            INSERT INTO datamesh_catalog.runs (domain, product, run_id, ended_at, outcome, quality_score)
            SELECT p.domain, p.name, 'scheduled__' || r,
                   now() - (r * 13 + length(p.name)) * interval '1 hour',
                   CASE WHEN r = 2 THEN 'failed' ELSE 'success' END, 60 + (length(p.name) * r) % 41
            FROM datamesh_catalog.products p, generate_series(1, 5) AS r""")
        cur.execute(
            "SELECT datamesh_catalog.refresh_search_document(domain, name) FROM datamesh_catalog.products"
        )
        cur.execute("ANALYZE")
    conn.commit()


def load_average() -> str:
    """The machine's load while timing: figures from a shared 2-core machine mean little without it."""
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20, help="Times each query runs (after one warm-up).")
    args = parser.parse_args()

    scratch = None
    if os.environ.get("PGHOST"):
        server = from_environment(REPO_ROOT)
    else:
        scratch = tempfile.mkdtemp(prefix="search-bench-")
        server = start_embedded(Path(scratch))
    admin = server.connect(autocommit=True)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    bench = Warehouse(server.host, server.port, server.user, server.password, DATABASE, server.embedded)
    conn = bench.connect()
    try:
        store.migrate(conn)
        started = time.perf_counter()
        fill(conn, args.products)
        print(
            f"filled {args.products} products (3 outputs x 8 columns, 5 runs each) in "
            f"{time.perf_counter() - started:.1f}s"
        )
        timings: dict[str, list[float]] = {}
        for kind, text, filters in QUERIES:
            hits = search(conn, text, filters)  # warm-up, and a sanity check below
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                search(conn, text, filters)
                timings.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
            print(f"  {kind:14} {text or '-':24} {len(hits):3} hits")
        every = [t for values in timings.values() for t in values]
        print(load_average())
        print(f"{'queries':14} {'n':>5} {'p50 ms':>8} {'p95 ms':>8}")
        for kind, values in [*timings.items(), ("all", every)]:
            print(
                f"{kind:14} {len(values):5} {statistics.median(values):8.1f} {percentile(values, 0.95):8.1f}"
            )
    finally:
        conn.close()
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.close()
        if scratch:
            stop_embedded(Path(scratch))


if __name__ == "__main__":
    main()
