"""The catalog tests' database fixtures (a pytest plugin: `pytest_plugins = ["catalog_db"]`):
a database of its own per test on the session's real PostgreSQL."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from psycopg2 import sql

from generator.warehouse.connection import Warehouse

_databases = itertools.count(1)


@pytest.fixture
def empty_db(warehouse: Warehouse) -> Iterator[Warehouse]:
    """A database of its own, so 'from empty' means empty."""
    name = f"catalog_test_{next(_databases)}_{id(warehouse) % 10000}"
    admin = warehouse.connect(autocommit=True)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield dataclasses.replace(warehouse, dbname=name)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


@pytest.fixture
def conn(empty_db: Warehouse) -> Iterator[psycopg2.extensions.connection]:
    connection = empty_db.connect()
    yield connection
    connection.close()
