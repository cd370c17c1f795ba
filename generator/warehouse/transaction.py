"""Small helpers shared by the run-time modules that talk to PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2.extensions


@contextmanager
def transaction(conn: psycopg2.extensions.connection) -> Iterator[psycopg2.extensions.cursor]:
    """One transaction on `conn`: commit on success, roll back on error.

    Works whatever the connection's autocommit setting is (psycopg2's `with conn` does not open a
    transaction on an autocommit connection) and restores it afterwards.
    """
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit
