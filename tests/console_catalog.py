"""A catalog database for the console's tests: the example mesh registered as after two runs (no
dbt, no Airflow), in a database of its own on the session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog_helpers import register_example_mesh
from psycopg2 import sql

from generator.warehouse.connection import Warehouse


@contextmanager
def example_catalog(warehouse: Warehouse, name: str, root: Path) -> Iterator[Warehouse]:
    dbname = f"{name}_{os.getpid()}"
    admin = warehouse.connect(autocommit=True)
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    db = dataclasses.replace(warehouse, dbname=dbname)
    conn = db.connect()
    try:
        register_example_mesh(conn, root)
    finally:
        conn.close()
    try:
        yield db
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.close()
