"""Major versions side by side, the "latest" interface, retirement after the deprecation date,
a failed gate changing nothing, and `datamesh rollback`: for real, with dbt running as the
domains' roles against PostgreSQL."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
import yaml
from psycopg2 import sql

from generator.dev.demo_data import seed_operational_data
from generator.errors import RunFailed, SpecError
from generator.platform.access import granted_privileges
from generator.platform.publish import publish
from generator.platform.setup import setup_platform
from generator.render.dbt_project import render_dbt_project
from generator.runtime import tasks
from generator.spec.mesh import load_mesh
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
PRODUCER = ("pvcust", "customer_profiles")  # a copy of customers/customer_profiles in its own domain
CONSUMER = ("pvread", "v1_reader")
_names = itertools.count(1)


# --- publish-level: versions without dbt -----------------------------------------------------------


def spec(version: str, name: str, deprecations: list[dict] | None = None, extra: bool = False) -> DataProduct:
    columns = [{"name": "id", "type": "integer"}, {"name": "marker", "type": "integer"}]
    if extra:
        columns.append({"name": "note", "type": "text"})
    return DataProduct.model_validate(
        {
            "spec_version": 1,
            "name": name,
            "domain": "pvtest",
            "version": version,
            "description": "d",
            "owner": {"team": "t", "email": "t@example.com"},
            "classification": "internal",
            "schedule": "@daily",
            "sla": {"freshness_hours": 24},
            "outputs": [{"name": "facts", "description": "f", "columns": columns}],
            "access": {"roles": ["pv_reader"]},
            "deprecations": deprecations or [],
        }
    )


def build(cur: psycopg2.extensions.cursor, product: DataProduct, marker: int) -> None:
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(product.build_schema)))
    columns = [c.name for c in product.outputs[0].columns]
    select = {"id": sql.SQL("g"), "marker": sql.Literal(marker), "note": sql.SQL("'n'::text")}
    cur.execute(
        sql.SQL("CREATE TABLE {} AS SELECT {} FROM generate_series(1, 3) g").format(
            sql.Identifier(product.build_schema, "facts"),
            sql.SQL(", ").join(sql.SQL("{} AS {}").format(select[c], sql.Identifier(c)) for c in columns),
        )
    )


def columns_of(cur: psycopg2.extensions.cursor, schema: str, relation: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position",
        (schema, relation),
    )
    return [row[0] for row in cur.fetchall()]


def schema_exists(cur: psycopg2.extensions.cursor, schema: str) -> bool:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return cur.fetchone() is not None


@pytest.fixture
def admin(warehouse: Warehouse) -> Iterator[psycopg2.extensions.connection]:
    conn = warehouse.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pv_reader'")
        if cur.fetchone() is None:
            cur.execute("CREATE ROLE pv_reader NOLOGIN")
    yield conn
    conn.close()


def test_v1_is_served_beside_v2_until_its_date_then_retired(admin):
    name = f"prod{next(_names)}"
    v1 = spec("1.3.0", name)
    v2 = spec("2.0.0", name, deprecations=[{"major": 1, "serve_until": "2030-01-31"}], extra=True)
    with admin.cursor() as cur:
        build(cur, v1, marker=1)
    publish(admin, v1)
    with admin.cursor() as cur:
        build(cur, v2, marker=2)
    published = publish(admin, v2, today=dt.date(2030, 1, 31))  # the last day v1 is served

    assert published.retired == () and published.latest == v2.latest_schema
    with admin.cursor() as cur:
        assert columns_of(cur, v1.published_schema, "facts") == ["id", "marker"]
        assert columns_of(cur, v2.published_schema, "facts") == ["id", "marker", "note"]
        assert columns_of(cur, v2.latest_schema, "facts") == ["id", "marker", "note"]
        cur.execute(
            sql.SQL("SELECT max(marker) FROM {}").format(sql.Identifier(v1.published_schema, "facts"))
        )
        assert cur.fetchone()[0] == 1
        cur.execute(
            "SELECT has_table_privilege('pv_reader', %s, 'SELECT')", (f"{v1.published_schema}.facts",)
        )
        assert cur.fetchone()[0]

    # publishing the older major again (a hotfix of v1) does not move the latest interface back
    with admin.cursor() as cur:
        build(cur, v1, marker=3)
    assert publish(admin, v1).latest is None
    with admin.cursor() as cur:
        assert columns_of(cur, v2.latest_schema, "facts") == ["id", "marker", "note"]

    with admin.cursor() as cur:
        build(cur, v2, marker=4)
    published = publish(admin, v2, today=dt.date(2030, 2, 1))
    assert published.retired == (v1.published_schema,)
    with admin.cursor() as cur:
        assert not schema_exists(cur, v1.published_schema)
        assert schema_exists(cur, v2.published_schema)


def test_a_consumer_may_pin_an_older_major_only_while_it_is_served(tmp_path: Path):
    def write(product: dict[str, Any]) -> None:
        folder = tmp_path / "dbt" / product["domain"] / product["name"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data_product.yaml").write_text(yaml.safe_dump(product, sort_keys=False))

    producer = spec("2.0.0", "maker").model_dump(mode="json", by_alias=True, exclude_defaults=True)
    producer["spec_version"] = 1
    consumer = spec("1.0.0", "taker").model_dump(mode="json", by_alias=True, exclude_defaults=True)
    consumer.update(spec_version=1, schedule=None)
    consumer["inputs"] = {
        "products": [{"domain": "pvtest", "product": "maker", "output": "facts", "major": 1}]
    }
    del consumer["schedule"]
    write(producer)
    write(consumer)
    with pytest.raises(SpecError, match=r"pvtest/maker publishes major version 2, not 1"):
        load_mesh(tmp_path)

    producer["deprecations"] = [{"major": 1, "serve_until": "2030-01-31"}]
    write(producer)
    assert [p.spec.key for p in load_mesh(tmp_path).products] == ["pvtest__maker", "pvtest__taker"]


# --- for real: dbt as the domain roles, the pipeline's stages -------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, warehouse: Warehouse) -> Iterator[Path]:
    """A scratch repo: the customers example copied into domain `pvcust`, plus a consumer in
    domain `pvread` that reads its customers_dim at major 1 (including `country`, which v2 drops)."""
    copy = tmp_path_factory.mktemp("versions") / "repo"
    ignore = shutil.ignore_patterns("target", "dbt_packages", "logs", "package-lock.yml")
    shutil.copytree(REPO / "dbt/_platform", copy / "dbt/_platform", ignore=ignore)
    shutil.copytree(REPO / "policies", copy / "policies", ignore=ignore)
    producer_dir = copy / "dbt" / PRODUCER[0] / PRODUCER[1]
    shutil.copytree(REPO / "dbt/customers/customer_profiles/models", producer_dir / "models", ignore=ignore)
    producer = yaml.safe_load((REPO / "dbt/customers/customer_profiles/data_product.yaml").read_text())
    producer["domain"] = PRODUCER[0]
    producer["access"]["domains"].append(CONSUMER[0])
    save(copy, producer)
    consumer = {
        "spec_version": 1,
        "name": CONSUMER[1],
        "domain": CONSUMER[0],
        "version": "1.0.0",
        "description": "Reads customers at major 1.",
        "owner": {"team": "t", "email": "t@example.com"},
        "classification": "internal",
        "retention_days": 30,
        "sla": {"freshness_hours": 24},
        "inputs": {
            "products": [
                {"domain": PRODUCER[0], "product": PRODUCER[1], "output": "customers_dim", "major": 1}
            ]
        },
        "outputs": [
            {
                "name": "segments",
                "description": "Customers by segment and country.",
                "primary_key": ["customer_id"],
                "columns": [
                    {"name": "customer_id", "type": "text", "description": "id"},
                    {"name": "customer_segment", "type": "text", "description": "segment"},
                    {"name": "country", "type": "char(2)", "description": "country"},
                ],
            }
        ],
        "access": {"roles": ["analyst"]},
    }
    save(copy, consumer)
    model = copy / "dbt" / CONSUMER[0] / CONSUMER[1] / "models" / "segments.sql"
    model.parent.mkdir(parents=True)
    model.write_text(
        "select cast(customer_id as text) as customer_id,\n"
        "       cast(customer_segment as text) as customer_segment,\n"
        "       cast(country as char(2)) as country\n"
        "from {{ source('pvcust__customer_profiles', 'customers_dim') }}\n"
    )
    render(copy)
    conn = warehouse.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            for role in ("analyst", "data_scientist", "customer_support"):
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        seed_operational_data(conn)
    finally:
        conn.close()
    setup_platform(warehouse, load_mesh(copy).products)
    saved = os.environ.get(tasks.ROOT_VARIABLE)
    os.environ[tasks.ROOT_VARIABLE] = str(copy)
    yield copy
    if saved is None:
        os.environ.pop(tasks.ROOT_VARIABLE, None)
    else:
        os.environ[tasks.ROOT_VARIABLE] = saved


def save(root: Path, product: dict[str, Any]) -> None:
    folder = root / "dbt" / product["domain"] / product["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data_product.yaml").write_text(yaml.safe_dump(product, sort_keys=False))


def render(root: Path) -> None:
    mesh = load_mesh(root)
    for entry in mesh.products:
        for path, text in render_dbt_project(entry, mesh).generated.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, encoding="utf-8")


def run_and_publish(root: Path, domain: str, product: str) -> dict:
    dag_file = str(root / "dags" / f"{domain}__{product}.py")
    tasks.run_models(dag_file, domain, product)
    tasks.test_models(dag_file, domain, product)
    return tasks.publish_outputs(dag_file, domain, product)


def query(warehouse: Warehouse, text: str | sql.Composable, *args: object) -> list[tuple]:
    with warehouse.connect() as conn, conn.cursor() as cur:
        cur.execute(text, args)
        return cur.fetchall()


def view_columns(warehouse: Warehouse, schema: str, relation: str) -> list[str]:
    return [
        r[0]
        for r in query(
            warehouse,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            schema,
            relation,
        )
    ]


def test_v2_ships_while_the_consumer_keeps_reading_v1(root: Path, warehouse: Warehouse):
    key = "__".join(PRODUCER)
    v1 = run_and_publish(root, *PRODUCER)
    consumer_dag = str(root / "dags" / f"{'__'.join(CONSUMER)}.py")
    tasks.run_models(consumer_dag, *CONSUMER)  # dbt as domain_pvread reads pvcust's v1 views
    # dbt really ran as the consumer's domain role: it owns what it built
    assert query(
        warehouse,
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = %s",
        "__".join(CONSUMER) + "__build",
    ) == [("segments", "domain_pvread")]
    tasks.test_models(consumer_dag, *CONSUMER)
    consumed = tasks.publish_outputs(consumer_dag, *CONSUMER)
    assert consumed["rows"]["segments"] == v1["rows"]["customers_dim"] > 0
    # publish left an empty build schema behind, owned by the domain role, for the next run
    assert query(
        warehouse, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", f"{key}__build"
    ) == [("domain_pvcust",)]

    # the breaking change: v2 drops `country`; v1 stays served until its date
    producer = yaml.safe_load((root / "dbt" / PRODUCER[0] / PRODUCER[1] / "data_product.yaml").read_text())
    producer["version"] = "2.0.0"
    producer["outputs"][0]["columns"] = [
        c for c in producer["outputs"][0]["columns"] if c["name"] != "country"
    ]
    producer["deprecations"] = [
        {"major": 1, "serve_until": "2999-12-31", "note": "country moves to addresses"}
    ]
    save(root, producer)
    model = root / "dbt" / PRODUCER[0] / PRODUCER[1] / "models" / "customers_dim.sql"
    model.write_text(
        model.read_text().replace("    cast(upper(trim(country_code)) as char(2)) as country,\n", "")
    )
    render(root)
    v2 = run_and_publish(root, *PRODUCER)
    again = run_and_publish(root, *CONSUMER)

    assert v2["schema"] == f"{key}__v2" and v1["schema"] == f"{key}__v1"
    assert "country" in view_columns(warehouse, f"{key}__v1", "customers_dim")
    assert "country" not in view_columns(warehouse, f"{key}__v2", "customers_dim")
    assert view_columns(warehouse, key, "customers_dim") == view_columns(
        warehouse, f"{key}__v2", "customers_dim"
    )
    assert again["rows"]["segments"] == v1["rows"]["customers_dim"]
    sources = yaml.safe_load(
        (root / "dbt" / CONSUMER[0] / CONSUMER[1] / "models" / "_sources.yml").read_text()
    )
    assert sources["sources"][0]["schema"] == f"{key}__v1"
    # the consumer's domain reads v1 and v2 (the spec grants its domain), never the PII columns
    for schema in (f"{key}__v1", f"{key}__v2", key):
        (can,) = query(
            warehouse,
            "SELECT has_column_privilege('domain_pvread', %s, 'customer_segment', 'SELECT'),"
            " has_column_privilege('domain_pvread', %s, 'customer_email', 'SELECT')",
            f"{schema}.customers_dim",
            f"{schema}.customers_dim",
        )
        assert can == (True, False), schema


def test_a_failed_gate_leaves_published_data_and_grants_exactly_as_they_were(
    root: Path, warehouse: Warehouse
):
    key = "__".join(PRODUCER)
    published = run_and_publish(root, *PRODUCER)
    schemas = [published["schema"], key, f"{key}__v1"]

    def state() -> tuple:
        with warehouse.connect() as conn, conn.cursor() as cur:
            grants = granted_privileges(cur, schemas)
            cur.execute(
                sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} t").format(
                    sql.Identifier(published["schema"], "customers_dim")
                )
            )
            return grants, cur.fetchone()[0]

    before = state()
    spec_path = root / "dbt" / PRODUCER[0] / PRODUCER[1] / "data_product.yaml"
    good = spec_path.read_text()
    broken = yaml.safe_load(good)
    del broken["retention_days"]  # the blocking policy retention_set
    broken["access"]["roles"] = ["analyst", "customer_support"]  # a revoke that must not happen
    save(root, broken)
    render(root)
    try:
        dag_file = str(root / "dags" / f"{key}.py")
        query(warehouse, "UPDATE customers_ops.customers SET segment = 'smb' RETURNING 1")  # new rows built
        tasks.run_models(dag_file, *PRODUCER)
        tests = tasks.test_models(dag_file, *PRODUCER)
        with pytest.raises(RunFailed, match="governance gate blocks the publish"):
            tasks.governance_gate(dag_file, *PRODUCER, tests)
        # the DAG stops here: publish never runs; consumers see exactly what they saw
        assert state() == before
    finally:
        spec_path.write_text(good)
        render(root)
        conn = warehouse.connect()
        try:
            seed_operational_data(conn)
        finally:
            conn.close()


def test_datamesh_rollback_republishes_the_previous_build(root: Path, warehouse: Warehouse):
    first = run_and_publish(root, *PRODUCER)
    second = run_and_publish(root, *PRODUCER)
    datamesh = str(Path(sys.executable).with_name("datamesh"))
    env = {**os.environ, **warehouse.env(), "DATAMESH_ROOT": str(root)}

    done = subprocess.run(
        [datamesh, "rollback", "pvcust/customer_profiles"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{second['snapshot']} -> {first['snapshot']}" in done.stdout
    current = query(
        warehouse,
        """
        SELECT DISTINCT t.relnamespace::regnamespace::text FROM pg_depend d
          JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class t ON t.oid = d.refobjid
         WHERE r.ev_class = %s::regclass AND t.oid <> r.ev_class""",
        f"{second['schema']}.customers_dim",  # whichever major is current: v2 once test_v2_ships ran
    )
    assert current == [(first["snapshot"],)]
    recorded = query(
        warehouse,
        "SELECT count(*) FROM datamesh_catalog.audit_log WHERE action = 'rollback' "
        "AND domain = %s AND details->>'to_snapshot' = %s",
        PRODUCER[0],
        first["snapshot"],
    )
    assert recorded == [(1,)]
