"""Who may read a data product, who may write where, and how PostgreSQL enforces both.

Read access comes from the spec's `access` section and nothing else:

- every role in `access.roles` and the role `domain_<d>` of every domain in `access.domains`
  gets USAGE on the published schema and SELECT on its views; nobody else does (PUBLIC never);
- on an output with PII columns, only the readers cleared for PII (`access.pii_roles`, and the
  domain roles of `access.pii_domains`) get SELECT on the whole view; every other reader gets
  column-level SELECT on the non-PII columns, so `SELECT customer_email` is "permission denied".

Write access: each domain's dbt runs as `domain_<domain>` (SET ROLE, see `dbt_as_domain_role`).
That role owns its products' build schemas and nothing else: no CREATE on the database, no write
privilege on any published or snapshot schema (publish takes the snapshot's ownership away).

Every SQL text that carries a name is composed with psycopg2.sql.Identifier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from generator.errors import RunFailed
from generator.spec.model import DataProduct, domain_role
from generator.warehouse.connection import Warehouse

log = logging.getLogger(__name__)

Cursor = psycopg2.extensions.cursor

# The generated profiles.yml sets `role: domain_<domain>` only when this variable is "1"
# (generator/render_dbt.py), so dbt run by hand for development runs as the connecting user.
DBT_AS_DOMAIN_VARIABLE = "DATAMESH_DBT_AS_DOMAIN"

# relkinds whose ownership moves with a schema's: tables, views, materialized views, partitioned
# tables, sequences, foreign tables (indexes follow their table).
OWNED_KINDS = {
    "r": "TABLE",
    "p": "TABLE",
    "f": "FOREIGN TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "S": "SEQUENCE",
}


# What a person runs to create domain roles, build schemas and source grants: every message about
# a half-set-up platform names it.
SETUP_COMMAND = "datamesh platform setup"


@dataclass(frozen=True)
class Readers:
    """The roles that may read a product, in spec order, and those of them cleared for PII."""

    roles: tuple[str, ...]
    pii: frozenset[str]

    def columns(self, spec: DataProduct, role: str, output: str) -> set[str]:
        """The columns of `output` that `role` may select, as the spec says."""
        found = spec.output(output)
        if found is None or role not in self.roles:
            return set()
        return {c.name for c in found.columns if c.pii is None or role in self.pii}


def wanted_readers(spec: DataProduct) -> list[tuple[str, str]]:
    """(role, spec field it comes from) for every reader the spec names, in spec order."""
    wanted = [(role, "access.roles") for role in spec.access.roles]
    wanted += [(domain_role(d), "access.domains") for d in spec.access.domains]
    return wanted


def spec_readers(spec: DataProduct) -> Readers:
    """The readers the spec names, whether or not the roles exist."""
    roles = tuple(dict.fromkeys(role for role, _ in wanted_readers(spec)))
    pii = {*spec.access.pii_roles, *(domain_role(d) for d in spec.access.pii_domains)}
    return Readers(roles, frozenset(pii))


def resolve_readers(cur: Cursor, spec: DataProduct, roles_must_exist: bool = True) -> Readers:
    """The spec's readers; RunFailed naming every role that does not exist (checked before any
    change, so a typo in a spec never leaves half-applied grants)."""
    wanted = wanted_readers(spec)
    cur.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([r for r, _ in wanted],))
    existing = {row[0] for row in cur.fetchall()}
    missing = [(role, where) for role, where in wanted if role not in existing]
    if missing and roles_must_exist:
        lines = [
            f"role {role!r} (from {where}"
            + (f": domain {role.removeprefix('domain_')!r}" if where == "access.domains" else "")
            + ") does not exist"
            for role, where in missing
        ]
        raise RunFailed(
            f"{spec.key}: cannot grant read access, nothing was published: "
            + "; ".join(lines)
            + f". Create the role(s) in the warehouse (`{SETUP_COMMAND}` lists the missing ones with "
            "the SQL that creates them, and creates domain roles), or remove them from the spec's access section."
        )
    for role, where in missing:
        log.warning("%s: skipping role %s (from %s): it does not exist", spec.key, role, where)
    named = spec_readers(spec)
    roles = tuple(r for r in named.roles if r in existing)
    return Readers(roles, frozenset(r for r in named.pii if r in existing))


@dataclass(frozen=True)
class ViewShape:
    """A published view as grants see it: its columns, and which of them hold PII."""

    name: str
    columns: tuple[str, ...]
    pii: frozenset[str]


def spec_shapes(spec: DataProduct) -> list[ViewShape]:
    return [
        ViewShape(o.name, tuple(c.name for c in o.columns), frozenset(c.name for c in o.columns if c.pii))
        for o in spec.outputs
    ]


def sync_grants(cur: Cursor, schema: str, views: list[ViewShape], readers: Readers) -> None:
    """Make the grants on `schema` and its `views` exactly what `readers` says.

    Everything granted before is revoked first (a table-level REVOKE also revokes column-level
    privileges), then granted again; in one transaction with the publish, so a reader never sees
    the state in between.
    """
    schema_id = sql.Identifier(schema)
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_id))
    cur.execute(
        """SELECT r.rolname
             FROM pg_namespace n, aclexplode(n.nspacl) a
             JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = %s AND a.grantee <> n.nspowner""",
        (schema,),
    )
    for role in sorted({row[0] for row in cur.fetchall()} - set(readers.roles)):
        log.info("revoking access to %s from %s", schema, role)
        cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema_id, sql.Identifier(role)))
    for shape in views:
        view = sql.Identifier(schema, shape.name)
        cur.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(view))
        for role in _grantees(cur, schema, shape.name):
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(view, sql.Identifier(role)))
        whole = [r for r in readers.roles if not shape.pii or r in readers.pii]
        partial = [r for r in readers.roles if r not in whole]
        plain = [c for c in shape.columns if c not in shape.pii]
        if whole:
            cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(view, _roles(whole)))
        if partial and plain:
            cur.execute(
                sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in plain), view, _roles(partial)
                )
            )
    if readers.roles:
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema_id, _roles(list(readers.roles))))


def _roles(roles: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(r) for r in roles)


def _grantees(cur: Cursor, schema: str, relation: str) -> list[str]:
    """Roles other than the owner holding any privilege on a relation or on one of its columns."""
    cur.execute(
        """SELECT DISTINCT r.rolname
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attribute at ON at.attrelid = c.oid AND at.attnum > 0
             CROSS JOIN LATERAL (SELECT (aclexplode(c.relacl)).grantee
                                 UNION SELECT (aclexplode(at.attacl)).grantee) g
             JOIN pg_roles r ON r.oid = g.grantee
            WHERE n.nspname = %s AND c.relname = %s AND g.grantee <> c.relowner
            ORDER BY 1""",
        (schema, relation),
    )
    return [row[0] for row in cur.fetchall()]


def reassign_schema(cur: Cursor, schema: str, owner: sql.Composable) -> None:
    """Make `owner` own `schema` and every relation in it (metadata only, no data is copied)."""
    cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), owner))
    cur.execute(
        """SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relkind = ANY(%s) ORDER BY c.relname""",
        (schema, list(OWNED_KINDS)),
    )
    for name, kind in cur.fetchall():
        if kind == "S" and _owned_by_a_column(cur, schema, name):
            continue  # an identity/serial sequence follows its table's owner
        cur.execute(
            sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL(OWNED_KINDS[kind]), sql.Identifier(schema, name), owner
            )
        )


def _owned_by_a_column(cur: Cursor, schema: str, sequence: str) -> bool:
    cur.execute(
        """SELECT 1 FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
             JOIN pg_namespace n ON n.oid = s.relnamespace
            WHERE n.nspname = %s AND s.relname = %s AND d.deptype IN ('a', 'i')
              AND d.refclassid = 'pg_class'::regclass""",
        (schema, sequence),
    )
    return cur.fetchone() is not None


def seal_snapshot(cur: Cursor, snapshot: str) -> None:
    """A published snapshot belongs to the platform (the publishing user), not to the domain role
    that built it: published rows change only through the next publish, never by hand. Readers
    reach it only through the published views, so whatever the domain role granted on its build
    schema (a dbt `grants:` config, a hook) is revoked: it would bypass the spec's access list."""
    reassign_schema(cur, snapshot, sql.SQL("CURRENT_USER"))
    revoke_all_but_owner(cur, snapshot)


def revoke_all_but_owner(cur: Cursor, schema: str) -> None:
    """No privilege on `schema`, its relations or their columns for anyone but their owner."""
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(schema)))
    owners = _owners(cur, schema)
    for _, relation, _, grantee, _ in granted_privileges(cur, [schema]):
        if grantee == owners.get(relation):
            continue
        who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        if relation:
            # a table-level REVOKE ALL also takes column-level privileges away
            cur.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(schema, relation), who))
        else:
            cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), who))


def _owners(cur: Cursor, schema: str) -> dict[str, str]:
    """The owner of `schema` (key '') and of each of its relations (key: the relation's name)."""
    cur.execute(
        """SELECT '', pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %(schema)s
           UNION ALL
           SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s""",
        {"schema": schema},
    )
    return dict(cur.fetchall())


def ensure_build_schema(cur: Cursor, spec: DataProduct) -> bool:
    """The product's build schema, owned by its domain role (with whatever dbt left in it).

    This is the only place the domain role may write, and why it needs no CREATE on the database.
    Does nothing (returns False) when the domain role does not exist: then dbt runs as the
    connecting user, as in development.
    """
    role = spec.domain_role
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cur.fetchone() is None:
        return False
    schema = sql.Identifier(spec.build_schema)
    cur.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, sql.Identifier(role))
    )
    reassign_schema(cur, spec.build_schema, sql.Identifier(role))
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
    return True


def require_platform_ready(conn: psycopg2.extensions.connection, spec: DataProduct) -> None:
    """RunFailed naming `datamesh platform setup` unless what a run of `spec` needs from the platform
    is there: its domain role, its build schema owned by that role, and the role's read access to
    the declared sources. Checked before dbt starts, so the task says what to do instead of dbt's
    `role "domain_x" does not exist` or `permission denied for table ...`. Only reads."""
    role = spec.domain_role
    with conn.cursor() as cur:
        cur.execute(
            """SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s),
                      (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s)""",
            (role, spec.build_schema),
        )
        role_exists, owner = cur.fetchone()
        wrong = [] if role_exists else [f"role {role!r} does not exist"]
        if owner is None:
            wrong.append(f"build schema {spec.build_schema!r} does not exist")
        elif role_exists and owner != role:
            wrong.append(f"build schema {spec.build_schema!r} is owned by {owner!r}, not {role!r}")
        for i, source in enumerate(spec.inputs.sources if role_exists else []):
            name = f"{source.schema_}.{source.table}"
            cur.execute(
                """SELECT c.oid IS NOT NULL,
                          c.oid IS NOT NULL AND has_schema_privilege(%(role)s, c.relnamespace, 'USAGE')
                                            AND has_table_privilege(%(role)s, c.oid, 'SELECT')
                     FROM (SELECT to_regclass(quote_ident(%(schema)s) || '.' || quote_ident(%(table)s)) AS oid) r
                     LEFT JOIN pg_class c ON c.oid = r.oid""",
                {"role": role, "schema": source.schema_, "table": source.table},
            )
            exists, readable = cur.fetchone()
            if not exists:
                wrong.append(f"source table {name} (inputs.sources[{i}]) does not exist: create it first")
            elif not readable:
                wrong.append(f"role {role!r} may not read source table {name} (inputs.sources[{i}])")
    conn.rollback()  # end the read-only transaction psycopg2 opened
    if wrong:
        raise RunFailed(
            f"{spec.key}: the platform is not set up for this product: " + "; ".join(wrong) + ". "
            f"Run `{SETUP_COMMAND}` against this warehouse (as its admin), then retry the task."
        )


@contextmanager
def dbt_as_domain_role(spec: DataProduct | None = None, warehouse: Warehouse | None = None) -> Iterator[None]:
    """dbt started inside this block runs as the product's domain role (see profiles.yml). Given
    the spec and the warehouse, it first checks that the platform is ready for the product
    (`require_platform_ready`), so a half-set-up warehouse fails with the command that fixes it."""
    if spec is not None and warehouse is not None:
        conn = warehouse.connect()
        try:
            require_platform_ready(conn, spec)
        finally:
            conn.close()
    saved = os.environ.get(DBT_AS_DOMAIN_VARIABLE)
    os.environ[DBT_AS_DOMAIN_VARIABLE] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(DBT_AS_DOMAIN_VARIABLE, None)
        else:
            os.environ[DBT_AS_DOMAIN_VARIABLE] = saved


def granted_privileges(cur: Cursor, schemas: list[str]) -> list[tuple[str, str, str, str, str]]:
    """Every privilege granted on `schemas`, their relations and their columns, as sorted
    (schema, relation, column, grantee, privilege) rows ('' where not applicable; grantee
    'PUBLIC' for PUBLIC). For comparing what a step changed, and for showing it."""
    cur.execute(
        """SELECT n.nspname, '', '', coalesce(r.rolname, 'PUBLIC'), a.privilege_type
             FROM pg_namespace n, aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = ANY(%(schemas)s)
           UNION ALL
           SELECT n.nspname, c.relname, '', coalesce(r.rolname, 'PUBLIC'), a.privilege_type
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
             LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = ANY(%(schemas)s)
           UNION ALL
           SELECT n.nspname, c.relname, at.attname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type
             FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(at.attacl) a
             LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = ANY(%(schemas)s) AND at.attnum > 0
            ORDER BY 1, 2, 3, 4, 5""",
        {"schemas": schemas},
    )
    return [tuple(row) for row in cur.fetchall()]
