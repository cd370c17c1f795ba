"""What a domain role leaves in its build schema, checked before the platform reads or publishes it.

The build schema is written by the domain's role, but the gate measures it and publish serves it
as the platform user. A plain table holds data only; a view (or materialized view, or foreign
table) holds SQL that runs when it is read, and every function it calls runs with the reader's
rights. So an output must be a plain table, and a published snapshot keeps its output tables and
nothing else: no function, view or other object the domain wrote (an index expression calling
one would run as the snapshot's owner on the next ANALYZE), and no copy the domain made of
someone else's data, rides along into a snapshot the platform owns.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from generator.errors import RunFailed
from generator.spec.model import DataProduct

Cursor = psycopg2.extensions.cursor

TABLE_KINDS = ("r", "p")  # plain and partitioned tables
_KIND_NAMES = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "i": "an index",
    "I": "an index",
    "c": "a composite type",
}
_DROP_KINDS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}


def require_output_tables(cur: Cursor, spec: DataProduct, schema: str, what: str) -> None:
    """RunFailed when an output of `spec` in `schema` exists but is not a plain table (missing
    outputs are reported by the callers, which know what a missing one means to them)."""
    cur.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = ANY(%s) ORDER BY c.relname""",
        (schema, [o.name for o in spec.outputs]),
    )
    wrong = [
        f"output {name!r} is {_KIND_NAMES.get(kind, f'a relation of kind {kind!r}')}"
        for name, kind in cur.fetchall()
        if kind not in TABLE_KINDS
    ]
    if wrong:
        raise RunFailed(
            f"{spec.key}: {what} {schema!r}: " + "; ".join(wrong) + ". An output must be materialized "
            "as a table (the project default; remove materialized='view' from the model's config): "
            "the platform reads and publishes data, never SQL that runs when it is read."
        )


def keep_only_outputs(cur: Cursor, spec: DataProduct, schema: str) -> list[str]:
    """Drop every routine of `schema` (with what depends on it: an index, default, trigger or
    policy calling it) and every relation that is not one of the spec's output tables (dbt's
    staging views and tables, leftovers); partitions of an output stay with it. Returns what was
    dropped. Metadata only: the outputs' rows are not touched."""
    dropped = _drop_routines(cur, schema)
    outputs = {o.name for o in spec.outputs}
    cur.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = ANY(%s) AND NOT c.relispartition
            ORDER BY c.relkind = 'v' DESC, c.relname""",  # views first: they read the tables
        (schema, list(_DROP_KINDS)),
    )
    for name, kind in cur.fetchall():
        if name in outputs and kind in TABLE_KINDS:
            continue
        # IF EXISTS: an earlier CASCADE may have taken it already (a view reading a dropped view)
        cur.execute(
            sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(_DROP_KINDS[kind]), sql.Identifier(schema, name))
        )
        dropped.append(name)
    return dropped


def _drop_routines(cur: Cursor, schema: str) -> list[str]:
    cur.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = %s ORDER BY 1""",
        (schema,),
    )
    signatures = [row[0] for row in cur.fetchall()]
    for signature in signatures:
        # regprocedure's text is PostgreSQL's own quoting of the name and argument types.
        cur.execute(sql.SQL("DROP ROUTINE IF EXISTS {} CASCADE").format(sql.SQL(signature)))
    return signatures
