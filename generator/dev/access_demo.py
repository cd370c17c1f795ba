"""The demo's access step: a real analyst login reads an order's amount and is refused its email.

It connects as a LOGIN role that is a member of `analyst`, exactly as a person would, so what it
prints is PostgreSQL's own verdict, not ours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import closing

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

DEMO_LOGIN = "analyst_demo"
DEMO_GROUP = "analyst"

Echo = Callable[[str], None]


def ensure_login(warehouse: Warehouse, login: str, member_of: str) -> None:
    """A LOGIN role (no password: the embedded server trusts local connections) in `member_of`."""
    with closing(warehouse.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(login)))
        conn.commit()


def read_as(warehouse: Warehouse, login: str, query: sql.Composable) -> tuple[list[tuple], str | None]:
    """Run `query` on a new connection as `login`: (rows, None), or ([], PostgreSQL's error)."""
    as_login = dataclasses.replace(warehouse, user=login, password="")
    with closing(as_login.connect(autocommit=True)) as conn, conn.cursor() as cur:
        try:
            cur.execute(query)
            return cur.fetchall(), None
        except psycopg2.Error as exc:
            return [], (exc.pgerror or str(exc)).strip().splitlines()[0]


def show_pii_refusal(warehouse: Warehouse, spec: DataProduct, output: str, echo: Echo = print) -> bool:
    """Print an analyst reading a non-PII column of `output` and being refused a PII column.
    Returns whether PostgreSQL behaved as the spec says (read allowed, PII refused)."""
    found = spec.output(output)
    assert found is not None, f"{spec.key} has no output {output}"
    pii = next((c.name for c in found.columns if c.pii), None)
    plain = [c.name for c in found.columns if c.pii is None]
    if pii is None or not plain:
        echo(f"access: {spec.key}.{output} has no PII column next to a plain one; nothing to show")
        return False
    view = sql.Identifier(spec.published_schema, output)
    key = sql.Identifier(plain[0])
    amount = next((c.name for c in found.columns if "amount" in c.name), plain[-1])
    ensure_login(warehouse, DEMO_LOGIN, DEMO_GROUP)
    echo(f"access: connected as {DEMO_LOGIN} (member of {DEMO_GROUP}) to {spec.published_schema}.{output}")
    allowed = sql.SQL("SELECT {}, {} FROM {} ORDER BY 1 LIMIT 1").format(key, sql.Identifier(amount), view)
    rows, error = read_as(warehouse, DEMO_LOGIN, allowed)
    if error:
        echo(f"  SELECT {plain[0]}, {amount}  -> refused: {error}")
    else:
        echo(f"  SELECT {plain[0]}, {amount}  -> {rows[0] if rows else '(no rows)'}")
    refused = sql.SQL("SELECT {}, {} FROM {} LIMIT 1").format(key, sql.Identifier(pii), view)
    _, pii_error = read_as(warehouse, DEMO_LOGIN, refused)
    echo(
        f"  SELECT {plain[0]}, {pii}  -> "
        + (f"refused: {pii_error}" if pii_error else "ALLOWED (unexpected)")
    )
    return error is None and pii_error is not None and "permission denied" in pii_error
