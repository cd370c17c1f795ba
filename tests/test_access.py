"""Access enforced by PostgreSQL itself: the privilege matrix (logins x outputs x columns) equals
what the spec says, checked in the catalog and by connecting as each login; PII columns; a domain
role cannot write into another domain's schemas; a missing role leaves every grant as it was."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import yaml
from psycopg2 import sql

from generator.errors import RunFailed, SpecError
from generator.platform.access import ensure_build_schema, granted_privileges
from generator.platform.publish import publish
from generator.platform.setup import create_domain_roles
from generator.spec.load import load_spec
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse
from generator.warehouse.transaction import transaction

_names = itertools.count(1)

# login -> the NOLOGIN role it is a member of (domain roles have members, not logins)
MEMBERS = {
    "pa_sales_user": "domain_pasales",
    "pa_risk_user": "domain_parisk",
    "pa_other_user": "domain_paother",
}
LOGINS = ["pa_analyst", "pa_support", "pa_scientist", "pa_outsider", *MEMBERS]

OUTPUTS = [
    {
        "name": "orders",
        "description": "one row per order",
        "columns": [
            {"name": "order_id", "type": "integer"},
            {"name": "amount", "type": "numeric(12,2)"},
            {"name": "email", "type": "text", "pii": "email"},
            {"name": "address", "type": "text", "pii": "address"},
        ],
    },
    {
        "name": "daily",
        "description": "one row per day",
        "columns": [{"name": "day", "type": "integer"}, {"name": "total", "type": "numeric(14,2)"}],
    },
]


def make_spec(access: dict[str, Any], domain: str = "pacc", name: str | None = None) -> DataProduct:
    return DataProduct.model_validate(spec_dict(access, domain, name))


def spec_dict(access: dict[str, Any], domain: str = "pacc", name: str | None = None) -> dict[str, Any]:
    return {
        "spec_version": 1,
        "name": name or f"prod{next(_names)}",
        "domain": domain,
        "version": "1.0.0",
        "description": "test product",
        "owner": {"team": "t", "email": "t@example.com"},
        "classification": "confidential",
        "schedule": "@daily",
        "sla": {"freshness_hours": 24},
        "outputs": OUTPUTS,
        "access": access,
    }


def build(cur: psycopg2.extensions.cursor, spec: DataProduct, rows: int = 3) -> None:
    """What `dbt run` leaves behind: one table per output in the build schema."""
    # Like dbt: create the schema only when missing (even IF NOT EXISTS needs CREATE on the database).
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (spec.build_schema,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(spec.build_schema)))
    for output in spec.outputs:
        cur.execute(
            sql.SQL("CREATE TABLE {} AS SELECT {} FROM generate_series(1, %s) g").format(
                sql.Identifier(spec.build_schema, output.name),
                sql.SQL(", ").join(
                    sql.SQL("g::{} AS {}").format(sql.SQL(c.type), sql.Identifier(c.name))
                    for c in output.columns
                ),
            ),
            (rows,),
        )


def as_login(warehouse: Warehouse, login: str) -> psycopg2.extensions.connection:
    """A real connection under `login`'s own user name (the embedded server trusts local users)."""
    return dataclasses.replace(warehouse, user=login, password="").connect(autocommit=True)


def expected_matrix(spec: DataProduct, schema: str) -> dict[tuple[str, str, str], bool]:
    """What the spec says, derived here independently of generator.platform.access."""
    readers = set(spec.access.roles) | {f"domain_{d}" for d in spec.access.domains}
    cleared = set(spec.access.pii_roles) | {f"domain_{d}" for d in spec.access.pii_domains}
    matrix = {}
    for login in LOGINS:
        effective = {login, MEMBERS.get(login, login)}
        for output in spec.outputs:
            for column in output.columns:
                allowed = bool(effective & readers) and (column.pii is None or bool(effective & cleared))
                matrix[(login, f"{schema}.{output.name}", column.name)] = allowed
    return matrix


def catalog_matrix(cur: psycopg2.extensions.cursor, spec: DataProduct, schema: str) -> dict:
    matrix = {}
    for login, output in itertools.product(LOGINS, spec.outputs):
        for column in output.columns:
            cur.execute(
                "SELECT has_schema_privilege(%s, %s, 'USAGE') AND has_column_privilege(%s, %s, %s, 'SELECT')",
                (login, schema, login, f"{schema}.{output.name}", column.name),
            )
            matrix[(login, f"{schema}.{output.name}", column.name)] = cur.fetchone()[0]
    return matrix


def connected_matrix(warehouse: Warehouse, spec: DataProduct, schema: str) -> dict:
    """Each login really selects each column: allowed, or refused with "permission denied"."""
    matrix = {}
    for login in LOGINS:
        conn = as_login(warehouse, login)
        try:
            with conn.cursor() as cur:
                for output in spec.outputs:
                    for column in output.columns:
                        query = sql.SQL("SELECT {} FROM {} LIMIT 1").format(
                            sql.Identifier(column.name), sql.Identifier(schema, output.name)
                        )
                        try:
                            cur.execute(query)
                            cur.fetchall()
                            allowed = True
                        except psycopg2.errors.InsufficientPrivilege:
                            allowed = False
                        matrix[(login, f"{schema}.{output.name}", column.name)] = allowed
        finally:
            conn.close()
    return matrix


def ensure_login(cur: psycopg2.extensions.cursor, login: str, member_of: str | None = None) -> None:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
    if member_of:
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(login)))


@pytest.fixture
def admin(warehouse: Warehouse) -> Iterator[psycopg2.extensions.connection]:
    conn = warehouse.connect(autocommit=True)
    create_domain_roles(conn, ["pasales", "parisk", "paother", "pwa", "pwb"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for login in LOGINS:
            ensure_login(cur, login, MEMBERS.get(login))
        for domain in ("pwa", "pwb"):
            ensure_login(cur, f"{domain}_user", f"domain_{domain}")
    yield conn
    conn.close()


@pytest.mark.integration
def test_the_privilege_matrix_is_the_spec_before_and_after_a_role_is_swapped(admin, warehouse):
    spec = make_spec(
        {
            "roles": ["pa_analyst", "pa_support"],
            "domains": ["pasales", "parisk"],
            "pii_roles": ["pa_support"],
            "pii_domains": ["parisk"],
        }
    )
    with admin.cursor() as cur:
        build(cur, spec)
    publish(admin, spec)

    for schema in (spec.published_schema, spec.latest_schema):
        expected = expected_matrix(spec, schema)
        with admin.cursor() as cur:
            assert catalog_matrix(cur, spec, schema) == expected
        assert connected_matrix(warehouse, spec, schema) == expected
    # spot checks a person would make: the analyst reads amounts, not emails; support reads both
    assert expected[("pa_analyst", f"{spec.latest_schema}.orders", "amount")]
    assert not expected[("pa_analyst", f"{spec.latest_schema}.orders", "email")]
    assert expected[("pa_support", f"{spec.latest_schema}.orders", "email")]

    # pa_support leaves the spec, pa_scientist joins; the next publish applies exactly that
    changed = make_spec(
        {
            "roles": ["pa_analyst", "pa_scientist"],
            "domains": ["pasales", "parisk"],
            "pii_domains": ["parisk"],
        },
        name=spec.name,
    )
    with admin.cursor() as cur:
        build(cur, changed)
    publish(admin, changed)

    for schema in (changed.published_schema, changed.latest_schema):
        expected = expected_matrix(changed, schema)
        with admin.cursor() as cur:
            assert catalog_matrix(cur, changed, schema) == expected
        assert connected_matrix(warehouse, changed, schema) == expected
    assert not any(v for (login, _, _), v in expected.items() if login == "pa_support")
    assert expected[("pa_scientist", f"{changed.latest_schema}.daily", "total")]
    with admin.cursor() as cur:
        grantees = {
            row[3] for row in granted_privileges(cur, [changed.published_schema, changed.latest_schema])
        }
    assert "PUBLIC" not in grantees and "pa_support" not in grantees


@pytest.mark.integration
def test_a_domain_role_writes_its_own_build_schema_and_nothing_of_another_domain(admin, warehouse):
    producer = make_spec({"domains": ["pwb"]}, domain="pwa")  # pwb may read pwa's product
    with transaction(admin) as cur:
        assert ensure_build_schema(cur, producer)
    own = as_login(warehouse, "pwa_user")
    try:
        with own.cursor() as cur:
            cur.execute("SET ROLE domain_pwa")  # as dbt does (profiles.yml `role:`)
            build(cur, producer)  # the producer's dbt writes its own build schema
    finally:
        own.close()
    published = publish(admin, producer)

    other = as_login(warehouse, "pwb_user")
    refused = []
    attempts = {
        "create a table in another domain's build schema": sql.SQL("CREATE TABLE {} (x int)").format(
            sql.Identifier(producer.build_schema, "intruder")
        ),
        "insert into another domain's published view": sql.SQL("INSERT INTO {} (day) VALUES (1)").format(
            sql.Identifier(producer.published_schema, "daily")
        ),
        "delete from another domain's snapshot": sql.SQL("DELETE FROM {}").format(
            sql.Identifier(published.snapshot, "daily")
        ),
        "drop another domain's latest view": sql.SQL("DROP VIEW {}").format(
            sql.Identifier(producer.latest_schema, "daily")
        ),
        "create a schema": sql.SQL("CREATE SCHEMA {}").format(sql.Identifier("pwa__squatter__build")),
    }
    try:
        with other.cursor() as cur:
            cur.execute("SET ROLE domain_pwb")
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(producer.published_schema, "daily"))
            )
            assert cur.fetchone()[0] == 3  # reading is what the spec grants
            for what, statement in attempts.items():
                try:
                    cur.execute(statement)
                except psycopg2.errors.InsufficientPrivilege as exc:
                    refused.append(what)
                    assert "permission denied" in str(exc) or "must be owner" in str(exc), str(exc)
    finally:
        other.close()
    assert refused == list(attempts)

    # and the producer itself cannot touch the rows it published: the platform owns the snapshot
    own = as_login(warehouse, "pwa_user")
    try:
        with own.cursor() as cur:
            cur.execute("SET ROLE domain_pwa")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(published.snapshot, "daily")))
    finally:
        own.close()


@pytest.mark.integration
def test_a_missing_role_fails_the_publish_and_leaves_every_grant_as_it_was(admin):
    spec = make_spec({"roles": ["pa_analyst"], "domains": ["pasales"]})
    with admin.cursor() as cur:
        build(cur, spec)
    publish(admin, spec)
    schemas = [spec.published_schema, spec.latest_schema]
    with admin.cursor() as cur:
        before = granted_privileges(cur, schemas)
        build(cur, spec, rows=7)
    typo = make_spec({"roles": ["pa_scientist", "pa_analist"], "domains": ["pasales"]}, name=spec.name)

    with pytest.raises(RunFailed, match=r"role 'pa_analist' \(from access\.roles\) does not exist"):
        publish(admin, typo)

    with admin.cursor() as cur:
        assert granted_privileges(cur, schemas) == before
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.published_schema, "daily")))
        assert cur.fetchone()[0] == 3
    assert ("pa_analyst", "SELECT") in {(g, p) for _, rel, _, g, p in before if rel == "daily"}


@pytest.mark.parametrize(
    ("access", "message"),
    [
        (
            {"roles": ["a"], "pii_roles": ["b"]},
            r"access: .*pii_roles lists 'b', which access\.roles does not",
        ),
        ({"domains": ["x"], "pii_domains": ["y"]}, r"pii_domains lists 'y', which access\.domains does not"),
    ],
)
def test_pii_clearance_for_a_non_reader_is_a_spec_error(tmp_path, access, message):
    path = tmp_path / "data_product.yaml"
    path.write_text(yaml.safe_dump(spec_dict(access), sort_keys=False))
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_a_quality_rule_reads_only_the_input_columns_its_domain_may_read(repo_root):
    from generator.render.dbt_project import render_dbt_project
    from generator.spec.mesh import load_mesh

    mesh = load_mesh(repo_root)
    sales = mesh.find("sales", "sales_orders_analytical")
    rendered = render_dbt_project(sales, mesh).generated
    rule = rendered["dbt/sales/sales_orders_analytical/tests/quality/orders__referential_integrity.sql"]
    # customers_dim holds PII and sales is not cleared for it: `select *` would be "permission denied"
    cte = next(line for line in rule.splitlines() if "customers_dim') }}" in line)
    assert '"customer_id"' in cte and "customer_email" not in cte and "*" not in cte
