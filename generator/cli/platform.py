"""`datamesh platform setup` and `prepare`: the warehouse and the dbt projects made ready for the mesh,
on every deploy. Registered in main.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from generator.errors import CheckFailed, UserError

if TYPE_CHECKING:
    from generator.cli.context import Context
    from generator.platform.setup import SetupReport


@click.group("platform")
def platform_group() -> None:
    """The platform team's commands: what the warehouse needs before any DAG runs."""


@platform_group.command("setup")
@click.option("--dry-run", is_flag=True, help="Print the SQL it would run; change nothing.")
@click.option(
    "--create-roles",
    is_flag=True,
    envvar="DATAMESH_CREATE_ROLES",
    help="Create the access roles specs name but the warehouse lacks (NOLOGIN). Env: DATAMESH_CREATE_ROLES.",
)
@click.pass_obj
def setup(ctx: Context, dry_run: bool, create_roles: bool) -> None:
    """Migrate the catalog; create the domain roles, the build schemas and the domains' read grants
    on their operational sources; revoke source grants no spec asks for any more; check that every
    access role a spec names exists; sync the published schemas' grants; make PostgreSQL record
    consumer reads (`datamesh usage enable`, a superuser only).

    Idempotent and safe to run on every deploy, and twice at once. Run it as the warehouse's admin
    (a superuser, or a role with CREATEROLE). Exit 1 when a spec is broken (the other products are
    set up) or an access role is missing.
    """
    import psycopg2

    from generator.layout import DBT_DIR
    from generator.platform.setup import setup_repo
    from generator.warehouse.connection import from_environment

    if not (ctx.root / DBT_DIR).is_dir():
        raise UserError(f"{ctx.root} has no {DBT_DIR}/ folder: run datamesh from the repo root, or pass --root")
    warehouse = from_environment(ctx.root)
    click.echo(f"warehouse: {warehouse.describe()}")
    try:
        warehouse.connect().close()
    except psycopg2.OperationalError as exc:
        raise UserError(
            f"cannot reach the warehouse ({warehouse.describe()}): {_first_line(exc)}. Check the PG* "
            "variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), then run `datamesh platform setup` again."
        ) from exc
    try:
        report = setup_repo(warehouse, ctx.root, create_roles=create_roles, dry_run=dry_run)
    except psycopg2.errors.InsufficientPrivilege as exc:
        raise UserError(
            f"{warehouse.user!r} may not set up the platform: {_first_line(exc)}. Run `datamesh platform setup` "
            "as the warehouse's admin (a superuser, or a role with CREATEROLE that may own the domain roles' "
            "schemas). Its roles, schemas and grants were left as they were."
        ) from exc
    _echo(report)


@platform_group.command("prepare")
@click.argument("product", required=False)
@click.pass_obj
def prepare(ctx: Context, product: str | None) -> None:
    """Prepare each product's dbt project (all, or one PRODUCT) at deploy time or when building
    the image: its dbt packages (linked when local, else `dbt deps`; only when packages.yml
    changed) and dbt's partial-parse state of this revision (`dbt parse` with the run's target and
    role), kept in $DATAMESH_DBT_STATE_DIR, else in each project's target/pipeline/. Every task's
    dbt starts from it, so a run installs nothing and parses nothing that did not change. Projects
    whose revision is prepared already are skipped: a deploy parses only what changed. Run it
    after `datamesh render` and `datamesh platform setup`, with the PG* variables the tasks get
    (they are part of the state dbt checks)."""
    import time

    from generator.platform.access import dbt_as_domain_role
    from generator.runtime import dbt_runner
    from generator.warehouse.connection import from_environment

    ctx.require_repo()
    warehouse = from_environment(ctx.root)
    entries = ctx.mesh().select(product)
    parsed = 0
    for entry in entries:
        started = time.monotonic()
        # the tasks' dbt runs as the domain role: the role is in the profile, whose hash dbt checks;
        # in-process: one dbt import for every project (dbt_runner's module doc)
        with dbt_as_domain_role():
            did = dbt_runner.prepare(entry.project_dir, warehouse, in_process=True)
        parsed += did
        what = "prepared" if did else "already prepared"
        click.echo(f"{what} {entry.spec.domain}/{entry.spec.name} ({time.monotonic() - started:.1f} s)")
    click.echo(f"{len(entries)} dbt project(s): {parsed} parsed, {len(entries) - parsed} already prepared")


def _echo(report: SetupReport) -> None:
    for change in report.changes:
        if report.dry_run:
            click.echo(f"-- {change.kind}: {change.description}\n{change.sql}")
        else:
            click.echo(f"{change.kind:14} {change.description}")
    if not report.changes:
        click.echo(f"nothing to change ({report.products} product(s))")
    elif report.dry_run:
        click.echo(f"-- dry run: {len(report.changes)} change(s) above, none made")
    else:
        click.echo(f"{len(report.changes)} change(s) for {report.products} product(s)")
    for note in report.notes:
        click.echo(note, err=True)
    for source, named in report.waiting_sources.items():
        click.echo(
            f"waiting: source table {source} does not exist yet ({'; '.join(named)}): no grant on it. "
            "Create it, then run `datamesh platform setup` again.",
            err=True,
        )
    if report.missing_roles:
        click.echo(
            "missing: access roles the specs grant to do not exist. Create them as your organisation does, "
            "for example with this SQL, or run `datamesh platform setup --create-roles`:",
            err=True,
        )
        for role, named in report.missing_roles.items():
            click.echo(f'  CREATE ROLE "{role}" NOLOGIN;  -- {_mentions(named)}', err=True)
    if report.problems:
        click.echo(f"not set up: {len(report.skipped)} spec(s) could not be loaded; the others were set up:", err=True)
        for problem in report.problems:
            click.echo(f"  {problem}", err=True)
    if not report.complete:
        reasons = [f"{len(report.missing_roles)} access role(s) missing"] if report.missing_roles else []
        reasons += [f"{len(report.problems)} spec problem(s)"] if report.problems else []
        raise CheckFailed("platform setup incomplete: " + ", ".join(reasons) + " (see above)")


def _mentions(named: list[str], shown: int = 3) -> str:
    """Where specs name a role: 'dbt/a/b/data_product.yaml: access.roles; ...', the first few files."""
    files = list(dict.fromkeys(n.split(": ")[0] for n in named))
    more = f" and {len(files) - shown} more spec(s)" if len(files) > shown else ""
    return "named in " + ", ".join(files[:shown]) + more


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
