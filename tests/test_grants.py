"""Access that moves without a data build: `datamesh grants sync` makes the privilege matrix (login x
column, tried by logging in as each role) equal to the spec on every served major, and access
requests are decided by the owning team's members, as a reviewable spec diff, never as a grant."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import yaml
from psycopg2 import sql
from test_access import as_login, build, ensure_login

from generator.platform.access import granted_privileges
from generator.platform.publish import current_snapshot, publish
from generator.platform.setup import create_domain_roles, setup_repo
from generator.spec.load import load_spec
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

DATAMESH = str(Path(sys.executable).with_name("datamesh"))
LOGINS = ["gs_analyst", "gs_support", "gs_newcomer", "gs_outsider"]
_names = itertools.count(1)

OUTPUTS = [
    {
        "name": "orders",
        "description": "one row per order",
        "columns": [
            {"name": "order_id", "type": "integer"},
            {"name": "amount", "type": "numeric(12,2)"},
            {"name": "email", "type": "text", "pii": "email"},
        ],
    },
    {"name": "daily", "description": "one row per day", "columns": [{"name": "total", "type": "integer"}]},
]


def spec_dict(domain: str, name: str, access: dict[str, Any], version: str = "1.0.0", **more: Any) -> dict:
    return {
        "spec_version": 1, "name": name, "domain": domain, "version": version,
        "description": "test product", "owner": {"team": f"{domain}_team", "email": "team@example.com"},
        "classification": "confidential", "schedule": "@daily", "sla": {"freshness_hours": 24},
        "outputs": OUTPUTS, "access": access, **more,
    }


def domain_dict(domain: str) -> dict:
    return {
        "name": domain, "description": "a test domain", "bounded_context": "tests",
        "owner_team": f"{domain}_team",
        "teams": [{"name": f"{domain}_team", "email": "team@example.com"},
                  {"name": f"{domain}_other", "email": "other@example.com"}],
        "members": [
            {"name": "Lead", "email": f"lead@{domain}.example.com", "login": f"{domain}_lead",
             "team": f"{domain}_team", "roles": ["lead"]},
            {"name": "Neighbour", "email": f"neighbour@{domain}.example.com", "team": f"{domain}_other"},
        ],
        "on_call": {"email": "oncall@example.com"},
    }


class Repo:
    """A mesh of one product in a scratch repo, with its domain registry."""

    def __init__(self, root: Path, domain: str, name: str):
        self.root, self.domain, self.name = root, domain, name
        self.spec_path = root / "dbt" / domain / name / "data_product.yaml"

    def write(self, data: dict) -> DataProduct:
        self.spec_path.parent.mkdir(parents=True, exist_ok=True)
        self.spec_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return load_spec(self.spec_path)

    @property
    def spec(self) -> DataProduct:
        return load_spec(self.spec_path)


@pytest.fixture
def admin(warehouse: Warehouse) -> Iterator[psycopg2.extensions.connection]:
    conn = warehouse.connect(autocommit=True)
    with conn.cursor() as cur:
        for login in LOGINS:
            ensure_login(cur, login)
    yield conn
    conn.close()


@pytest.fixture
def repo(tmp_path: Path, admin: psycopg2.extensions.connection) -> Repo:
    domain = f"gs{next(_names)}{os.getpid() % 1000}"
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    (root / "domains").mkdir()
    (root / "domains" / f"{domain}.yaml").write_text(yaml.safe_dump(domain_dict(domain)), encoding="utf-8")
    create_domain_roles(admin, [domain])
    admin.autocommit = True
    with admin.cursor() as cur:
        ensure_login(cur, f"{domain}_lead")
    return Repo(root, domain, "sold")


def datamesh(root: Path, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"DATAMESH_ACTOR": actor} if actor else {})}
    if actor is None:
        env.pop("DATAMESH_ACTOR", None)
    return subprocess.run([DATAMESH, "--root", str(root), *args], capture_output=True, text=True, timeout=300,
                          env=env)


def publish_build(admin: psycopg2.extensions.connection, spec: DataProduct) -> None:
    with admin.cursor() as cur:
        build(cur, spec)
    publish(admin, spec)


def tried(warehouse: Warehouse, spec: DataProduct, schema: str) -> dict[tuple[str, str, str], bool]:
    """Each login really selects each column: allowed, or "permission denied"."""
    matrix = {}
    for login in LOGINS:
        conn = as_login(warehouse, login)
        try:
            with conn.cursor() as cur:
                for output in spec.outputs:
                    for column in output.columns:
                        try:
                            cur.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
                                sql.Identifier(column.name), sql.Identifier(schema, output.name)))
                            cur.fetchall()
                            allowed = True
                        except psycopg2.errors.InsufficientPrivilege:
                            allowed = False
                        matrix[(login, output.name, column.name)] = allowed
        finally:
            conn.close()
    return matrix


def expected(spec: DataProduct) -> dict[tuple[str, str, str], bool]:
    """What the spec says, derived here independently of the generator."""
    return {
        (login, output.name, column.name): login in spec.access.roles
        and (column.pii is None or login in spec.access.pii_roles)
        for login in LOGINS
        for output in spec.outputs
        for column in output.columns
    }


def grantees(admin: psycopg2.extensions.connection, schemas: list[str]) -> set[str]:
    with admin.cursor() as cur:
        cur.execute("SELECT rolname FROM pg_roles WHERE rolname = current_user")
        me = cur.fetchone()[0]
        return {row[3] for row in granted_privileges(cur, schemas)} - {me}


def audit(admin: psycopg2.extensions.connection, domain: str) -> list[tuple[str, str, dict]]:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT action, actor, details FROM datamesh_catalog.audit_log WHERE domain = %s ORDER BY id", (domain,)
        )
        return cur.fetchall()


def test_sync_makes_the_privilege_matrix_the_spec_and_a_revoked_reader_stops_without_a_build(
    repo: Repo, admin: psycopg2.extensions.connection, warehouse: Warehouse
) -> None:
    spec = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst", "gs_support"],
                                                          "pii_roles": ["gs_support"]}))
    publish_build(admin, spec)
    schemas = [spec.published_schema, spec.latest_schema]
    # Someone granted by hand what no spec says: sync takes it away.
    with admin.cursor() as cur:
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO gs_outsider").format(sql.Identifier(spec.latest_schema)))
        cur.execute(sql.SQL("GRANT SELECT ON {} TO gs_outsider").format(sql.Identifier(spec.latest_schema, "orders")))
    assert tried(warehouse, spec, spec.latest_schema)[("gs_outsider", "orders", "email")]

    done = datamesh(repo.root, "grants", "sync", f"{repo.domain}/{repo.name}")
    assert done.returncode == 0, done.stderr
    assert "revoke SELECT on" in done.stdout and "from gs_outsider" in done.stdout
    for schema in schemas:
        assert tried(warehouse, spec, schema) == expected(spec)
    assert grantees(admin, schemas) == {"gs_analyst", "gs_support"}  # zero extra grantees
    assert not tried(warehouse, spec, spec.latest_schema)[("gs_analyst", "orders", "email")]  # PII withheld

    # gs_support leaves the spec; no dbt run, no publish: only the sync.
    snapshot = current_snapshot(admin, spec)
    changed = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst"]}))
    assert datamesh(repo.root, "grants", "sync").returncode == 0
    for schema in schemas:
        assert tried(warehouse, changed, schema) == expected(changed)
    assert not any(v for (login, _, _), v in tried(warehouse, changed, spec.latest_schema).items()
                   if login == "gs_support")
    assert current_snapshot(admin, changed) == snapshot  # the data did not move
    assert grantees(admin, schemas) == {"gs_analyst"}
    # Idempotent: a second sync changes nothing.
    again = datamesh(repo.root, "grants", "sync")
    assert "0 privilege(s) changed" in again.stdout

    # The grant history is in the append-only audit log.
    entries = audit(admin, repo.domain)
    assert ("revoke", "gs_support") in {(a, d.get("grantee")) for a, _, d in entries}
    assert ("revoke", "gs_outsider") in {(a, d.get("grantee")) for a, _, d in entries}
    with pytest.raises(psycopg2.errors.RaiseException, match="append-only"), admin.cursor() as cur:
        cur.execute("DELETE FROM datamesh_catalog.audit_log WHERE domain = %s", (repo.domain,))


def test_sync_covers_every_served_major(repo: Repo, admin: psycopg2.extensions.connection, warehouse: Warehouse):
    v1 = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst", "gs_support"]}))
    publish_build(admin, v1)
    v2 = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst", "gs_support"]}, version="2.0.0",
                              deprecations=[{"major": 1, "serve_until": "2999-01-01"}]))
    publish_build(admin, v2)
    schemas = [v1.published_schema, v2.published_schema, v2.latest_schema]
    assert all(tried(warehouse, v1, s)[("gs_support", "daily", "total")] for s in schemas)

    dropped = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst"], "pii_roles": []},
                                   version="2.0.0", deprecations=[{"major": 1, "serve_until": "2999-01-01"}]))
    assert datamesh(repo.root, "grants", "sync", repo.name).returncode == 0
    for schema in schemas:
        assert tried(warehouse, dropped, schema) == expected(dropped), schema
    assert grantees(admin, schemas) == {"gs_analyst"}


def test_an_unknown_role_in_a_spec_is_refused_and_nothing_changes(repo: Repo, admin, warehouse) -> None:
    spec = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst"]}))
    publish_build(admin, spec)
    with admin.cursor() as cur:
        before = granted_privileges(cur, [spec.published_schema, spec.latest_schema])
    repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_support", "gs_no_such_role"]}))
    done = datamesh(repo.root, "grants", "sync")
    assert done.returncode == 2
    assert "role 'gs_no_such_role' does not exist" in done.stderr
    assert f"dbt/{repo.domain}/{repo.name}/data_product.yaml: access.roles" in done.stderr
    assert "nothing was changed" in done.stderr
    with admin.cursor() as cur:
        assert granted_privileges(cur, [spec.published_schema, spec.latest_schema]) == before


def test_platform_setup_syncs_grants(repo: Repo, admin: psycopg2.extensions.connection, warehouse) -> None:
    spec = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst", "gs_support"]}))
    publish_build(admin, spec)
    repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst"]}))
    report = setup_repo(warehouse, repo.root)
    assert any(c.kind == "revoke" and "gs_support" in c.description for c in report.changes)
    assert grantees(admin, [spec.published_schema, spec.latest_schema]) == {"gs_analyst"}
    # and the catalog's domain row follows the registry
    with admin.cursor() as cur:
        cur.execute("SELECT owner_team, source, on_call->>'email' FROM datamesh_catalog.domains WHERE name = %s",
                    (repo.domain,))
        assert cur.fetchone() == (f"{repo.domain}_team", "registry", "oncall@example.com")


def requests(admin: psycopg2.extensions.connection, domain: str) -> list[tuple]:
    with admin.cursor() as cur:
        cur.execute("SELECT id, role, status, decided_by FROM datamesh_catalog.access_requests WHERE domain = %s "
                    "ORDER BY id", (domain,))
        return cur.fetchall()


def test_access_requests_are_decided_by_the_owning_team_as_a_spec_diff(
    repo: Repo, admin: psycopg2.extensions.connection, warehouse: Warehouse
) -> None:
    spec = repo.write(spec_dict(repo.domain, repo.name, {"roles": ["gs_analyst"]}))
    publish_build(admin, spec)
    product = f"{repo.domain}/{repo.name}"
    assert datamesh(repo.root, "grants", "sync").returncode == 0  # the catalog is migrated

    # Bad input: a clear error naming the thing, and nothing recorded.
    for args, message in [
        (("nope/nothing",), "no such product"),
        ((product, "--output", "refunds"), "has no output 'refunds'; it has: orders, daily"),
        ((product, "--role", "gs_ghost"), "role 'gs_ghost' does not exist"),
        ((product, "--role", "gs_analyst"), "may read"),
    ]:
        role = [] if "--role" in args else ["--role", "gs_newcomer"]
        done = datamesh(repo.root, "access", "request", *args, *role, "--reason", "quarterly review")
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert requests(admin, repo.domain) == []

    done = datamesh(repo.root, "access", "request", product, "--role", "gs_newcomer", "--reason", "churn study",
                    actor="analyst@example.com")
    assert done.returncode == 0, done.stderr
    (first, _, status, _), = requests(admin, repo.domain)
    assert status == "pending"

    # Someone outside the owning team (a member of another team of the domain, or a stranger).
    before = repo.spec_path.read_bytes()
    for outsider in (f"neighbour@{repo.domain}.example.com", "stranger@example.com"):
        done = datamesh(repo.root, "access", "approve", str(first), "--write", actor=outsider)
        assert done.returncode == 2
        assert f"team '{repo.domain}_team', which owns {product}" in done.stderr
        assert f"lead@{repo.domain}.example.com" in done.stderr  # who may decide
    assert requests(admin, repo.domain)[0][2] == "pending" and repo.spec_path.read_bytes() == before

    # A member (by their login) approves: a diff, not a grant.
    done = datamesh(repo.root, "access", "approve", str(first), actor=f"{repo.domain}_lead")
    assert done.returncode == 0, done.stderr
    assert f"+++ b/dbt/{repo.domain}/{repo.name}/data_product.yaml" in done.stdout
    assert "+  - gs_newcomer" in done.stdout or "gs_analyst, gs_newcomer]" in done.stdout
    assert repo.spec_path.read_bytes() == before  # not written without --write
    assert requests(admin, repo.domain)[0][2:] == ("approved", f"lead@{repo.domain}.example.com")
    assert not tried(warehouse, spec, spec.latest_schema)[("gs_newcomer", "daily", "total")]

    # The same change, written for review; it grants only once synced (merged).
    second = _request(repo, admin, "gs_support", product)
    done = datamesh(repo.root, "access", "approve", str(second), "--write", actor=f"lead@{repo.domain}.example.com")
    assert done.returncode == 0, done.stderr
    assert "gs_support" in repo.spec.access.roles
    assert not tried(warehouse, spec, spec.latest_schema)[("gs_support", "daily", "total")]
    assert datamesh(repo.root, "grants", "sync").returncode == 0
    assert tried(warehouse, repo.spec, spec.latest_schema)[("gs_support", "daily", "total")]

    third = _request(repo, admin, "gs_outsider", product)
    done = datamesh(repo.root, "access", "deny", str(third), "--note", "use the aggregate", actor=f"{repo.domain}_lead")
    assert done.returncode == 0, done.stderr
    assert requests(admin, repo.domain)[-1][2] == "denied"
    again = datamesh(repo.root, "access", "approve", str(third), actor=f"{repo.domain}_lead")
    assert again.returncode == 2 and "was denied" in again.stderr

    history = json.loads(datamesh(repo.root, "access", "history", product, "--format", "json").stdout)
    assert [e["action"] for e in history if e["action"] in ("request", "approve", "deny")] == [
        "request", "approve", "request", "approve", "request", "deny"]
    assert any(e["action"] == "grant" and e["details"]["grantee"] == "gs_support" for e in history)


def _request(repo: Repo, admin, role: str, product: str) -> int:
    done = datamesh(repo.root, "access", "request", product, "--role", role, "--reason", "needed")
    assert done.returncode == 0, done.stderr
    return requests(admin, repo.domain)[-1][0]
