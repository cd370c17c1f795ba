"""How fast the console answers through a real Airflow api-server with the plugin.

For each catalog size (default 10,000 and 1,000 synthetic products, filled as search_bench.py does,
plus lineage: each product reads two earlier ones, and a compliance record per product), starts
`airflow api-server` with the plugin, logs in (a JWT from /auth/token) and times over HTTP:
- the search API (/datamesh/api/products) over search_bench's query mix: p50 and p95 (goal: p95 <= 50 ms
  at 10,000 products);
- each page (Mesh with and without words, Product, Compliance of a domain): p50 and p95 (goal: under
  a second at 1,000 products).

    .venv/bin/python benchmarks/console_bench.py [--sizes 10000 1000] [--repeat 20]

Uses the PG* variables' server if PGHOST is set, else an embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from psycopg2 import sql

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "benchmarks"), str(REPO_ROOT / "tests")]

from console_server import start_console  # noqa: E402
from search_bench import QUERIES, fill, percentile  # noqa: E402

from generator.catalog import store  # noqa: E402
from generator.catalog.search import search as search_library  # noqa: E402
from generator.warehouse.connection import Warehouse, from_environment, start_embedded, stop_embedded  # noqa: E402


def add_lineage_and_compliance(conn) -> None:  # type: ignore[no-untyped-def]
    """Each product reads output_1 of two earlier products; one static compliance record each."""
    with conn.cursor() as cur:
        cur.execute("""
            WITH numbered AS (
                SELECT domain, name, row_number() OVER (ORDER BY domain, name) AS n
                FROM datamesh_catalog.products)
            INSERT INTO datamesh_catalog.lineage (consumer_domain, consumer_product, producer_domain,
                                                  producer_product, producer_output, major)
            SELECT c.domain, c.name, p.domain, p.name, 'output_1', 1
            FROM numbered c JOIN numbered p ON p.n IN (c.n - 1, c.n / 2) AND p.n < c.n""")
        cur.execute("""
            INSERT INTO datamesh_catalog.compliance_records (domain, product, version, moment, verdict,
                policies_evaluated, policies_passed, policies_warned, policies_blocked, checks_evaluated,
                quality_score)
            SELECT domain, name, current_version, 'static', 'pass', 12, 12, 0, 0, 40, 90
            FROM datamesh_catalog.products""")
        cur.execute("ANALYZE")
    conn.commit()


def timed(client: http.client.HTTPConnection, path: str, token: str) -> float:
    started = time.perf_counter()
    client.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    answer = client.getresponse()
    answer.read()
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {answer.status}")
    return elapsed


def report(title: str, timings: dict[str, list[float]]) -> None:
    print(f"  {title:34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8}")
    for kind, values in timings.items():
        print(f"  {kind:34} {len(values):5} {statistics.median(values):8.1f} {percentile(values, 0.95):8.1f}")


def bench(server: Warehouse, products: int, repeat: int, home: Path) -> None:
    database = f"datamesh_console_bench_{products}"
    admin = server.connect(autocommit=True)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    db = Warehouse(server.host, server.port, server.user, server.password, database, server.embedded)
    console = None
    try:
        conn = db.connect()
        store.migrate(conn)
        started = time.perf_counter()
        fill(conn, products)
        add_lineage_and_compliance(conn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT domain, name FROM datamesh_catalog.products ORDER BY domain, name LIMIT 1 OFFSET %s",
                (products // 2,),
            )
            domain, name = cur.fetchone()
        conn.close()
        print(f"\n{products} products filled in {time.perf_counter() - started:.1f}s; starting the api-server ...")
        started = time.perf_counter()
        console = start_console(home, db)
        print(f"api-server up in {time.perf_counter() - started:.0f}s")
        token = console.token("viewer")
        client = http.client.HTTPConnection(urlsplit(console.url).netloc, timeout=60)
        search: dict[str, list[float]] = {}
        for kind, text, filters in QUERIES:
            params = {
                "q": text,
                "domain": filters.domain,
                "tag": filters.tag,
                "classification": filters.classification,
                "min_score": filters.min_quality,
                "freshness": filters.freshness,
            }
            path = "/datamesh/api/products?" + urlencode({k: v for k, v in params.items() if v is not None})
            timed(client, path, token)  # warm-up: the first request builds the app and the pool
            for _ in range(repeat):
                search.setdefault(kind, []).append(timed(client, path, token))
        search["all"] = [t for values in search.values() for t in values]
        report(f"search API, {products} products", search)
        # The same queries in-process (the library alone), and an API route doing next to nothing
        # (login, routing, a tiny query): what the API adds to the search itself.
        library: dict[str, list[float]] = {}
        with closing(db.connect()) as conn:
            for kind, text, filters in QUERIES:
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    search_library(conn, text, filters)
                    library.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
        library["all"] = [t for values in library.values() for t in values]
        floor = [timed(client, "/datamesh/api/incidents?limit=1", token) for _ in range(repeat * 3)]
        report("search in-process (same queries)", library)
        report("API floor (login, routing, 1 row)", {"/api/incidents?limit=1": floor})
        pages = {
            "Mesh (words)": "/datamesh/mesh?q=customer+order",
            "Mesh (filters only)": "/datamesh/mesh?domain=domain_7&freshness=stale",
            "Product": f"/datamesh/products/{domain}/{name}",
            "Compliance (one domain)": "/datamesh/compliance?domain=domain_7",
        }
        timings = {}
        for kind, path in pages.items():
            timed(client, path, token)
            timings[kind] = [timed(client, path, token) for _ in range(max(5, repeat // 2))]
        report(f"pages, {products} products", timings)
        client.close()
    finally:
        if console:
            console.stop()
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000])
    parser.add_argument("--repeat", type=int, default=20, help="Times each search runs (after a warm-up).")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="console-bench-"))
    server = from_environment(REPO_ROOT) if os.environ.get("PGHOST") else start_embedded(scratch / "pg")
    try:
        for size in args.sizes:
            bench(server, size, args.repeat, scratch / f"airflow-{size}")
    finally:
        if server.embedded and not os.environ.get("PGHOST"):
            stop_embedded(scratch / "pg")


if __name__ == "__main__":
    main()
