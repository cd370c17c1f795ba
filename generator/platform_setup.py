"""One-time (and idempotent) set-up of a warehouse for the mesh: the catalog and the domain roles.

Access roles that specs name (analyst, finance_controller, ...) belong to the organisation and are
not created here: publish refuses a role that does not exist, so a typo in a spec cannot silently
create a new role.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from generator import catalog
from generator.db import transaction
from generator.mesh import Mesh
from generator.publish import domain_role
from generator.warehouse import Warehouse


def bootstrap(warehouse: Warehouse, mesh: Mesh) -> list[str]:
    """Migrate the catalog and create `domain_<domain>` (NOLOGIN) for every domain of the mesh,
    including domains that only appear in access.domains. Returns the roles it created."""
    domains = sorted(
        {p.spec.domain for p in mesh.products} | {d for p in mesh.products for d in p.spec.access.domains}
    )
    conn = warehouse.connect()
    try:
        catalog.migrate(conn)
        return create_domain_roles(conn, domains)
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
