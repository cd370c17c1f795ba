"""Each product's dbt docs page in the catalog (table `docs_pages`, migration 0007).

`datamesh docs` builds the pages (dbt's single-file static page) and stores them here, so the
console's api-servers serve them from the database: every replica reads the same page, and nothing
is built on request. Pages are kept gzip-compressed; a browser that accepts gzip gets them as stored.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import datetime

import psycopg2.extensions

from generator.layout import CATALOG_SCHEMA
from generator.warehouse.transaction import transaction

_TABLE = f"{CATALOG_SCHEMA}.docs_pages"


@dataclass(frozen=True)
class DocsPage:
    domain: str
    product: str
    version: str
    html_gzip: bytes
    built_at: datetime

    @property
    def html(self) -> str:
        return gzip.decompress(self.html_gzip).decode("utf-8")


def store_docs_page(
    conn: psycopg2.extensions.connection, domain: str, product: str, version: str, html: str
) -> None:
    """Store (or replace) a product's docs page."""
    packed = gzip.compress(html.encode("utf-8"), compresslevel=6)
    with transaction(conn) as cur:
        cur.execute(
            f"""INSERT INTO {_TABLE} (domain, product, version, html_gzip) VALUES (%s, %s, %s, %s)
                ON CONFLICT (domain, product) DO UPDATE SET
                  version = EXCLUDED.version, html_gzip = EXCLUDED.html_gzip, built_at = now()""",
            (domain, product, version, psycopg2.Binary(packed)),
        )


def load_docs_page(conn: psycopg2.extensions.connection, domain: str, product: str) -> DocsPage | None:
    """The stored page, or None when none was built for the product."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT version, html_gzip, built_at FROM {_TABLE} WHERE domain = %s AND product = %s",
            (domain, product),
        )
        row = cur.fetchone()
    conn.rollback()
    if row is None:
        return None
    return DocsPage(domain, product, row[0], bytes(row[1]), row[2])


def products_with_docs(conn: psycopg2.extensions.connection) -> dict[str, datetime]:
    """'domain/product' -> when its page was built, for every product that has one."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT domain || '/' || product, built_at FROM {_TABLE}")
        found = dict(cur.fetchall())
    conn.rollback()
    return found
