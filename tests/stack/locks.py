"""Locks the stack test holds in the warehouse, as a long query of a consumer or an administrator
would: a task that needs the lock waits for it in the middle of its work, which is where the test
kills the task's worker. Its own connections go straight to PostgreSQL, not through the proxy."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import Any

from psycopg2 import sql

from tests.stack.processes import wait_for


class HeldLock:
    """`statement` (e.g. LOCK TABLE ...) run in a transaction kept open until `release()`."""

    def __init__(self, connect: Callable[[], Any], statement: sql.Composable | str) -> None:
        self._connect = connect
        self._conn = connect()
        with self._conn.cursor() as cur:
            cur.execute(statement)

    def release(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None

    def wait_for_waiter(self, query_start: str, timeout: float = 240) -> int:
        """The server pid of a session whose statement starts with `query_start` and waits for a
        lock (a fresh connection: pg_stat_activity is read once per transaction)."""

        def waiter() -> int | None:
            with closing(self._connect()) as conn:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(
                        """SELECT pid FROM pg_stat_activity
                            WHERE wait_event_type = 'Lock' AND ltrim(query) LIKE %s""",
                        (query_start.replace("%", r"\%") + "%",),
                    )
                    row = cur.fetchone()
            return row[0] if row else None

        return wait_for(f"a session running {query_start!r} to wait for the test's lock", waiter, timeout, 0.3)
