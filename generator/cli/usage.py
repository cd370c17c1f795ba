"""`datamesh usage`: reads of the products' views, measured by PostgreSQL (generator/catalog/usage.py).

    datamesh usage enable    make the server record consumer reads (a superuser; idempotent)
    datamesh usage collect   parse what it recorded since last time into the catalog (idempotent)
    datamesh usage show      reads per product, role and major version
"""

from __future__ import annotations

import json

import click

from generator.cli.catalog import _catalog
from generator.cli.context import Context


@click.group("usage")
def usage_group() -> None:
    """Reads of the products' views, measured by PostgreSQL (its log, or pg_stat_statements)."""


@usage_group.command("enable")
@click.pass_obj
def enable(ctx: Context) -> None:
    """Make PostgreSQL record consumer reads: the role in every log line, consumer logins' statements
    logged (or nothing to do with pg_stat_statements). Run again when a consumer login is added."""
    from generator.catalog import usage

    with _catalog(ctx) as conn:
        setup = usage.enable_logging(conn)
    if setup.method == "pg_stat_statements":
        click.echo("pg_stat_statements is installed: reads are counted from it, nothing to change")
    else:
        roles = ", ".join(setup.logged_roles) or "none yet"
        click.echo(f"server log: log_line_prefix {usage.LOG_LINE_PREFIX!r}; statements logged for: {roles}")


@usage_group.command("collect")
@click.option("--log-file", help="The server log (absolute, or relative to the data directory). "
              "Default: $DATAMESH_PG_LOG, the logging collector's file, or the embedded server's log.")
@click.pass_obj
def collect(ctx: Context, log_file: str | None) -> None:
    """Record in the catalog the reads PostgreSQL recorded since the last collect."""
    from generator.catalog import usage

    with _catalog(ctx) as conn:
        found = usage.collect(conn, log_file)
    click.echo(f"{found.reads} new read record(s) from {found.method} ({found.source})")


@usage_group.command("show")
@click.argument("product", required=False)
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (for the API and scripts).")
@click.pass_obj
def show(ctx: Context, product: str | None, days: int, as_json: bool) -> None:
    """Reads per product (or of PRODUCT, <domain>/<product>), by role and major version."""
    from generator.catalog import usage

    domain, name = product.split("/", 1) if product and "/" in product else (None, product)
    with _catalog(ctx) as conn:
        found = usage.usage_by_product(conn, days, domain, name)
    rows = sorted(found.values(), key=lambda u: (-u.reads, u.domain, u.product))
    if as_json:
        click.echo(json.dumps([u.as_dict() for u in rows], indent=2))
        return
    if not rows:
        click.echo(f"no reads recorded in the last {days} days (`datamesh usage collect` records them)")
    for u in rows:
        roles = ", ".join(f"{r} {n}" for r, n in sorted(u.by_role.items(), key=lambda i: -i[1]))
        refused = f", {u.refused} refused" if u.refused else ""
        click.echo(f"{u.domain}/{u.product}: {u.reads} reads by {u.readers} role(s){refused}  [{roles}]")
