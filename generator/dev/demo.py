"""The demo: the example mesh rendered, built, tested, gated, published and registered for real.

Steps: render -> start the warehouse -> seed operational source data -> set up the platform
(`datamesh platform setup --create-roles`: catalog, domain roles, build schemas, source grants, the
organisation's access roles) -> run every product's DAG with `airflow dags test`, producers before
consumers -> print a summary read back from the catalog.

The demo data replaces whatever the `*_ops` tables hold (generator/dev/demo_data.py). So on a
warehouse other than the embedded one (PGHOST set), the demo refuses to start unless told to seed
(`--seed-demo-data`, env DATAMESH_DEMO_SEED=1): refusing, rather than running without the data,
because every product would then fail on missing source tables, far from the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from generator.dev import airflow_local
from generator.errors import UserError
from generator.layout import AIRFLOW_HOME_DIR, CATALOG_SCHEMA, LOG_DIR
from generator.spec.mesh import Mesh, ProductEntry, load_mesh
from generator.warehouse.connection import Warehouse, from_environment

Echo = Callable[[str], None]


SEED_FLAG = "--seed-demo-data"
SEED_VARIABLE = "DATAMESH_DEMO_SEED"


def run_demo(
    root: Path, only: str | None = None, render: bool = True, echo: Echo = print, seed_demo_data: bool = False
) -> bool:
    """`seed_demo_data`: write the demo's source data even into a warehouse that is not the embedded one."""
    root = root.resolve()
    mesh = load_mesh(root)
    warehouse = from_environment(root)
    require_seed_allowed(warehouse, seed_demo_data)  # before anything is written anywhere
    if render:
        _render(root, mesh, echo)
    echo(f"warehouse: {warehouse.describe()}")
    prepare_warehouse(warehouse, mesh, echo)

    env = airflow_local.airflow_env(root, warehouse)
    echo(f"airflow: home {env['AIRFLOW_HOME']} (SQLite), migrating ...")
    airflow_local.migrate(env)

    results: dict[str, airflow_local.DagTestResult | None] = {}
    failed: set[str] = set()
    for entry in mesh.select(only):
        key = entry.spec.key
        blocked_by = [
            f"{i.domain}__{i.product}" for i in entry.spec.inputs.products if f"{i.domain}__{i.product}" in failed
        ]
        if blocked_by:
            echo(f"skip  {key}: its input {blocked_by[0]} did not publish")
            failed.add(key)
            results[key] = None
            continue
        echo(f"run   {key}: airflow dags test {key} ...")
        result = airflow_local.dags_test(env, key, root / LOG_DIR / f"{key}.log")
        results[key] = result
        verdict = "ok" if result.ok else "FAILED"
        echo(f"      {verdict} in {result.seconds:.0f}s (log: {result.log.relative_to(root)})")
        if not result.ok:
            failed.add(key)
    echo("")
    _summary(root, warehouse, mesh, results, echo)
    _show_access(warehouse, mesh, set(results) - failed, echo)
    _write_report(root, warehouse, echo)  # the last step: the mesh report, and where it is
    return not failed


def require_seed_allowed(warehouse: Warehouse, seed_demo_data: bool) -> None:
    """UserError unless the demo may write its source data into `warehouse` (see the module doc)."""
    if warehouse.embedded or seed_demo_data:
        return
    from generator.dev.demo_data import demo_tables

    tables = ", ".join(t.key for t in demo_tables())
    raise UserError(
        f"the warehouse is {warehouse.describe()} (PGHOST is set), not the embedded one: the demo would "
        f"empty and refill its operational tables there ({tables}). Nothing was written. Pass "
        f"{SEED_FLAG} (or set {SEED_VARIABLE}=1) to allow it, or unset PGHOST to use the embedded warehouse."
    )


def prepare_warehouse(warehouse: Warehouse, mesh: Mesh, echo: Echo = print) -> None:
    """Seed the source data, then set up the platform as `datamesh platform setup --create-roles`
    does: the demo stands in for the organisation's identity provider and creates the access roles
    the specs name. Seeding first, so the domain roles are granted read on the seeded tables."""
    from generator.dev.demo_data import seed_operational_data
    from generator.platform.setup import setup_platform

    with closing(warehouse.connect()) as conn:
        rows = seed_operational_data(conn)
    echo(f"seeded {sum(rows.values())} rows into {len(rows)} operational tables")
    report = setup_platform(warehouse, mesh.products, create_roles=True)
    done = f"{len(report.changes)} change(s)" if report.changes else "nothing to change"
    echo(f"platform setup (as `datamesh platform setup --create-roles`): {done}")


# --- step: access enforced by PostgreSQL (docs/publish-and-access.md) ----------------------------
ACCESS_DEMO = ("commerce", "orders", "orders_fact")  # an analyst may read amounts, not emails


def _show_access(warehouse: Warehouse, mesh: Mesh, published: set[str], echo: Echo) -> None:
    from generator.dev.access_demo import show_pii_refusal

    domain, product, output = ACCESS_DEMO
    entry = mesh.find(domain, product)
    if entry is None or entry.spec.key not in published:
        return
    echo("")
    show_pii_refusal(warehouse, entry.spec, output, echo)
    echo("")


# --- step: the mesh report (docs/catalog.md) ------------------------------------------------------


def _write_report(root: Path, warehouse: Warehouse, echo: Echo) -> None:
    from generator.report.mesh_report import build_report

    with closing(warehouse.connect()) as conn:
        path = build_report(conn, root)
    echo(f"mesh report (one static page, open it in a browser): {path}")


def _render(root: Path, mesh: Mesh, echo: Echo) -> None:
    from generator.render.mesh import render_all, stale_scope
    from generator.render.write import apply

    report = apply(root, render_all(mesh, mesh.products), stale_scope(mesh, mesh.products))
    echo(
        f"rendered {len(mesh.products)} products: {len(report.written)} files written, "
        f"{len(report.unchanged)} unchanged, {len(report.created)} model skeletons created"
    )


def _summary(
    root: Path,
    warehouse: Warehouse,
    mesh: Mesh,
    results: dict[str, airflow_local.DagTestResult | None],
    echo: Echo,
) -> None:
    runs = latest_runs(warehouse, list(results))
    header = f"{'product':42} {'status':8} {'rows':>6} {'tests':>9} {'gate':6} published as"
    echo(header)
    echo("-" * len(header))
    for key, result in results.items():
        entry = next(p for p in mesh.products if p.spec.key == key)
        run = runs.get(key)
        status = "skipped" if result is None else "ok" if result.ok else "failed"
        if run and result is not None and result.ok:
            rows = sum(run["rows_published"].values())
            tests = f"{run['tests_passed']}/{run['tests_passed'] + run['tests_failed']}"
            echo(f"{key:42} {status:8} {rows:>6} {tests:>9} {run['gate_verdict']:6} {entry.spec.published_schema}")
        else:
            echo(f"{key:42} {status:8} {'-':>6} {'-':>9} {'-':6} (not published)")
    echo("")
    _where_next(root, warehouse, [p for p in mesh.products if p.spec.key in results], echo)


def latest_runs(warehouse: Warehouse, keys: list[str]) -> dict[str, dict]:
    """The newest catalog run of each product, by product key."""
    with closing(warehouse.connect()) as conn, conn.cursor() as cur:
        cur.execute(
            f"""
            SELECT DISTINCT ON (domain, product) domain || '__' || product, outcome, rows_published,
                   coalesce(tests_passed, 0), coalesce(tests_failed, 0), coalesce(gate_verdict, '-')
            FROM {CATALOG_SCHEMA}.runs
            ORDER BY domain, product, ended_at DESC
            """
        )
        rows = cur.fetchall()
    fields = ("outcome", "rows_published", "tests_passed", "tests_failed", "gate_verdict")
    return {r[0]: dict(zip(fields, r[1:], strict=True)) for r in rows if r[0] in keys}


def _where_next(root: Path, warehouse: Warehouse, entries: list[ProductEntry], echo: Echo) -> None:
    example = entries[-1] if entries else None
    echo("Where to look next:")
    echo(f"  logs of each DAG run:  {LOG_DIR}/<domain>__<product>.log")
    psql = f"psql -h {warehouse.host} -p {warehouse.port} -U {warehouse.user} {warehouse.dbname}"
    echo(f"  the warehouse:         {psql}")
    echo(f"                         (schemas <domain>__<product>__v<major>; catalog in {CATALOG_SCHEMA})")
    if example:
        echo(f"  a product's card:      .venv/bin/datamesh show {example.spec.domain}/{example.spec.name}")
    echo("  the catalog:           .venv/bin/datamesh search <words>, lineage, impact, compliance")
    echo("  dbt docs:              .venv/bin/datamesh docs --serve  -> http://localhost:8081")
    echo("  the console:           .venv/bin/datamesh console  -> http://127.0.0.1:8080/plugin/datamesh")
    echo("                         (catalog pages and API inside Airflow; `datamesh docs` first for dbt docs)")
    echo(
        f"  Airflow UI:            AIRFLOW_HOME={root / AIRFLOW_HOME_DIR} "
        f"AIRFLOW__CORE__DAGS_FOLDER={root / 'dags'} airflow standalone  -> http://localhost:8080"
    )
