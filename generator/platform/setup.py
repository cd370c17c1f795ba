"""One-time (and idempotent) set-up of a warehouse for the mesh: the catalog, the domain roles,
each product's build schema, and each domain role's read access to its operational sources.

Access roles that specs name (analyst, finance_controller, ...) belong to the organisation and are
not created here: publish refuses a role that does not exist, so a typo in a spec cannot silently
create a new role.

What a domain role `domain_<d>` may do, and no more (least privilege that works):
- own (and so write) the build schema `<key>__build` of each of its products; the platform
  creates that schema, so the role needs no CREATE on the database and cannot make schemas;
- read the operational tables its specs declare under `inputs.sources` (SELECT on those tables,
  USAGE on their schemas);
- read other products' published schemas when their specs grant its domain (done by publish).
"""

from __future__ import annotations

import logging

import psycopg2.extensions
from psycopg2 import sql

from generator.catalog import store
from generator.platform.access import domain_role, ensure_build_schema
from generator.spec.mesh import Mesh
from generator.warehouse.connection import Warehouse
from generator.warehouse.transaction import transaction

log = logging.getLogger(__name__)


def bootstrap(warehouse: Warehouse, mesh: Mesh) -> list[str]:
    """Migrate the catalog, create `domain_<domain>` (NOLOGIN) for every domain of the mesh
    (including domains that only appear in access lists), create each product's build schema owned
    by its domain role, and grant the source reads that exist already. Returns the roles created."""
    domains = sorted(
        {p.spec.domain for p in mesh.products} | {d for p in mesh.products for d in p.spec.access.domains}
    )
    conn = warehouse.connect()
    try:
        store.migrate(conn)
        created = create_domain_roles(conn, domains)
        prepare_build_schemas(conn, mesh)
        grant_source_reads(conn, mesh)
        return created
    finally:
        conn.close()


def create_domain_roles(conn: psycopg2.extensions.connection, domains: list[str]) -> list[str]:
    created = []
    with transaction(conn) as cur:
        # Roles are cluster-wide and CREATE ROLE has no IF NOT EXISTS: serialise concurrent bootstraps.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('datamesh.bootstrap.roles'))")
        for domain in domains:
            role = domain_role(domain)
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                created.append(role)
    return created


def prepare_build_schemas(conn: psycopg2.extensions.connection, mesh: Mesh) -> None:
    """Each product's build schema, owned by its domain role (publish renames it away and leaves a
    new one behind, so this matters for a product's first run)."""
    with transaction(conn) as cur:
        for entry in mesh.products:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"datamesh.publish.{entry.spec.key}",))
            ensure_build_schema(cur, entry.spec)


def grant_source_reads(conn: psycopg2.extensions.connection, mesh: Mesh) -> list[str]:
    """SELECT on every operational table a spec declares, to that spec's domain role. Tables that
    do not exist yet are skipped and returned (`schema.table`): run this again after creating them."""
    missing = []
    with transaction(conn) as cur:
        for entry in mesh.products:
            role = sql.Identifier(domain_role(entry.spec.domain))
            for source in entry.spec.inputs.sources:
                cur.execute(
                    """SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = %s AND c.relname = %s""",
                    (source.schema_, source.table),
                )
                if cur.fetchone() is None:
                    missing.append(f"{source.schema_}.{source.table}")
                    continue
                cur.execute(
                    sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(source.schema_), role)
                )
                cur.execute(
                    sql.SQL("GRANT SELECT ON {} TO {}").format(
                        sql.Identifier(source.schema_, source.table), role
                    )
                )
    if missing:
        log.info("source tables not there yet (no grant): %s", ", ".join(missing))
    return missing
