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

import logging

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from generator.errors import RunFailed
from generator.platform.access import ensure_build_schema
from generator.spec.model import DataProduct
from generator.warehouse.transaction import transaction

log = logging.getLogger(__name__)

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


# --- healing: what someone other than the domain role left in the build schema -----------------------

_RELATION_KINDS = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "f": "FOREIGN TABLE",
    "S": "SEQUENCE",
    "c": "TYPE",  # a composite type made with CREATE TYPE ... AS (...)
}
_TYPE_KINDS = {"e": "TYPE", "d": "DOMAIN", "r": "TYPE", "m": "TYPE"}  # enum, domain, range, multirange


def heal_build_schema(conn: psycopg2.extensions.connection, spec: DataProduct) -> list[str]:
    """Before dbt runs as the domain role: drop what the domain role does not own in the build schema
    (say, tables a developer's `dbt build` by hand left there: dbt, as the domain role, would fail on
    them with "must be owner of table"), and leave the schema existing and owned by the role.

    Returns what was dropped, as "table x (owned by alice)", and logs it. Does nothing when the
    domain role does not exist (dbt then runs as the connecting user, as in development).
    """
    role = spec.domain_role
    schema = spec.build_schema
    with transaction(conn) as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            return []
        # one heal (or publish) of a product at a time: the same lock publish takes
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"datamesh.publish.{spec.key}",))
        cur.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (schema,))
        row = cur.fetchone()
        if row is not None and row[0] != role:
            log.warning(
                "%s: the build schema %s is owned by %s, not %s: giving it back", spec.key, schema, row[0], role
            )
        foreign = _not_owned_by(cur, schema, role) if row is not None else []
        dropped = [f"{kind.lower()} {name} (owned by {owner})" for kind, name, owner, _ in foreign]
        if dropped:
            log.warning(
                "%s: dropping from the build schema %s what the domain role %s does not own (left by "
                "dbt run by hand as another user? By hand, dbt writes to the `dev` target): %s",
                spec.key, schema, role, ", ".join(dropped),
            )
        for kind, name, owner, drop in foreign:
            try:
                # CASCADE: what the domain role built on it goes too; dbt builds it again
                cur.execute(sql.SQL("DROP {} IF EXISTS {} CASCADE").format(sql.SQL(kind), drop))
            except psycopg2.errors.InsufficientPrivilege as exc:
                statement = sql.SQL("DROP {} {} CASCADE;").format(sql.SQL(kind), drop).as_string(cur)
                raise RunFailed(
                    f"{spec.key}: {kind.lower()} {schema}.{name} in the build schema is owned by {owner}, "
                    f"not {role}, and {conn.info.user!r} may not drop it ({str(exc).strip()}). Drop it as "
                    f"{owner} or a superuser: {statement}"
                ) from None
        ensure_build_schema(cur, spec)
    return dropped


def _not_owned_by(cur: Cursor, schema: str, role: str) -> list[tuple[str, str, str, sql.Composable]]:
    """(DROP keyword, name, owner, the name to drop) of every object in `schema` not owned by `role`:
    relations (indexes and a column's sequence go with their table), routines and types."""
    found: list[tuple[str, str, str, sql.Composable]] = []
    cur.execute(
        """SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = ANY(%s) AND NOT c.relispartition
              AND pg_get_userbyid(c.relowner) <> %s
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')
                                 AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass)
            ORDER BY c.relkind IN ('v', 'm') DESC, c.relname""",  # views first: they read the tables
        (schema, list(_RELATION_KINDS), role),
    )
    for name, kind, owner in cur.fetchall():
        found.append((_RELATION_KINDS[kind], name, owner, sql.Identifier(schema, name)))
    cur.execute(
        """SELECT p.proname, p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = %s AND pg_get_userbyid(p.proowner) <> %s ORDER BY 2""",
        (schema, role),
    )
    for name, signature, owner in cur.fetchall():
        # regprocedure's text is PostgreSQL's own quoting of the name and argument types
        found.append(("ROUTINE", name, owner, sql.SQL(signature)))
    cur.execute(
        """SELECT t.typname, t.typtype, pg_get_userbyid(t.typowner)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = %s AND t.typtype = ANY(%s) AND pg_get_userbyid(t.typowner) <> %s
            ORDER BY t.typname""",
        (schema, list(_TYPE_KINDS), role),
    )
    for name, kind, owner in cur.fetchall():
        found.append((_TYPE_KINDS[kind], name, owner, sql.Identifier(schema, name)))
    return found

