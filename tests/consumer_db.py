"""The consumer tests' database (a pytest plugin): a database of its own with the catalog, and three
consumer logins (roles are the cluster's, so they are created once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from consumer_roles import ANALYST, OUTSIDER, SCIENTIST
from psycopg2 import sql

from generator.catalog import store
from generator.warehouse.connection import Warehouse


@pytest.fixture
def db(empty_db: Warehouse) -> Iterator[Warehouse]:
    """A database of its own with the catalog and three logins (roles are the cluster's)."""
    admin = empty_db.connect(autocommit=True)
    with admin.cursor() as cur:
        for login in (ANALYST, SCIENTIST, OUTSIDER):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
    admin.autocommit = False
    store.migrate(admin)
    admin.close()
    yield empty_db
