"""The console's connections to the catalog: a small pool per api-server process.

The warehouse is found as every datamesh process finds it (warehouse.connection.from_environment:
the Airflow connection `datamesh_warehouse`, else PG*, else the embedded server of DATAMESH_ROOT).
The catalog is brought up to date once, when the first connection opens, if this role may.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extensions

from generator.layout import ROOT_VARIABLE, find_root
from generator.warehouse.connection import Warehouse, from_environment

POOL_SIZE = 8  # idle connections kept; more open when needed and close after use


def repo_root() -> Path:
    configured = os.environ.get(ROOT_VARIABLE)
    return Path(configured).resolve() if configured else find_root(Path.cwd())


class CatalogPool:
    def __init__(self, warehouse: Warehouse | None = None, size: int = POOL_SIZE) -> None:
        self._warehouse = warehouse
        self._idle: queue.LifoQueue[psycopg2.extensions.connection] = queue.LifoQueue(maxsize=size)
        self._checked = False
        self._lock = threading.Lock()

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = from_environment(repo_root())
        return self._warehouse

    def _open(self) -> psycopg2.extensions.connection:
        conn = self.warehouse.connect()
        if not self._checked:
            with self._lock:
                if not self._checked:
                    from generator.catalog import store

                    store.ensure_current(conn)
                    self._checked = True
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        except psycopg2.Error:
            conn.close()  # a broken connection is not given back
            raise
        conn.rollback()
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
