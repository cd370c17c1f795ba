"""`datamesh grants sync` and `datamesh access request|approve|deny|list|history`: access that moves
without a data build, the spec staying its only source. Registered in main.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from generator.cli.context import Context, pass_ctx
from generator.errors import UserError

if TYPE_CHECKING:  # the spec model and psycopg2 are imported by the commands that run, not by `datamesh check`
    import psycopg2.extensions

    from generator.spec.mesh import Mesh, ProductEntry


@contextmanager
def _catalog(ctx: Context) -> Iterator[psycopg2.extensions.connection]:
    from generator.catalog import store
    from generator.warehouse.connection import from_environment

    conn = from_environment(ctx.root).connect()
    try:
        store.ensure_current(conn)
        yield conn
    finally:
        conn.close()


@click.group("grants")
def grants_group() -> None:
    """The warehouse's read privileges, from the specs' access lists."""


@grants_group.command("sync")
@click.argument("product", required=False)
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@pass_ctx
def grants_sync(ctx: Context, product: str | None, dry_run: bool) -> None:
    """Make the read privileges on every served major (and the latest schema) of all products, or
    one PRODUCT, equal to the specs' access lists, PII columns included. No data build: a reader
    removed from a spec stops reading now. Run it as the warehouse's admin."""
    from generator.platform.grants import sync

    entries = ctx.mesh().select(product)
    with _catalog(ctx) as conn:
        result = sync(conn, entries, dry_run=dry_run)
    for change in result.changes:
        click.echo(f"{'would ' if dry_run else ''}{change.action:6} {change.description}")
    for key in result.unpublished:
        click.echo(f"not published yet: {key} (its first publish applies its access list)")
    verb = "would change" if dry_run else "changed"
    click.echo(f"{len(result.synced)} product(s) synced: {len(result.changes)} privilege(s) {verb}")


@click.group("access")
def access_group() -> None:
    """Ask for read access to a product, and decide such requests (members of the owning team)."""


@access_group.command("request")
@click.argument("product")
@click.option("--role", required=True, help="The database role that should read (domain_<d> for a whole domain).")
@click.option("--reason", required=True, help="Why it needs to read the product.")
@click.option("--output", help="The output it needs (access lists are per product; this is for the reviewer).")
@pass_ctx
def access_request(ctx: Context, product: str, role: str, reason: str, output: str | None) -> None:
    """Record a request for ROLE to read PRODUCT. Nothing is granted until a member of the owning
    team approves, the spec change is merged and `datamesh grants sync` runs."""
    from generator.catalog.access_requests import request_access

    entry = ctx.mesh().select(product)[0]
    with _catalog(ctx) as conn:
        made = request_access(conn, entry.spec, role, reason, output)
    click.echo(
        f"access request {made.id}: {made.role} -> {entry.spec.domain}/{entry.spec.name} (pending). "
        f"A member of team {entry.spec.owner.team!r} decides: datamesh access approve {made.id}"
    )


@access_group.command("approve")
@click.argument("request_id", type=int)
@click.option("--write", is_flag=True, help="Also write the change to the spec file (then commit it for review).")
@click.option("--note", help="A note kept with the decision.")
@pass_ctx
def access_approve(ctx: Context, request_id: int, write: bool, note: str | None) -> None:
    """Approve a request (as $DATAMESH_ACTOR, else your OS user: a member of the owning team).
    Prints the spec change as a unified diff; the grant follows when it is merged and synced."""
    from generator.catalog.access_requests import decide, get_request
    from generator.spec.edit import add_reader, unified_diff

    mesh = ctx.mesh()
    with _catalog(ctx) as conn:
        request = get_request(conn, request_id)
        entry = _entry(mesh, request.domain, request.product)
        field, name = request.access_field
        before = entry.spec_path.read_text(encoding="utf-8")
        after = add_reader(before, entry.shown, field, name)  # checked before the decision is recorded
        decided = decide(conn, request, entry.spec, mesh.domain(request.domain), approve=True, note=note)
    diff = unified_diff(before, after, entry.shown)
    click.echo(f"access request {decided.id} approved by {decided.decided_by}")
    if not diff:
        click.echo(f"{entry.shown} lists {name!r} under access.{field} already: nothing to change")
        return
    click.echo(diff, nl=False)
    if write:
        entry.spec_path.write_text(after, encoding="utf-8")
        click.echo(f"wrote {entry.shown}: commit it for review; once merged, `datamesh grants sync` grants it")
    else:
        click.echo("not written (pass --write): the grant changes only once this change is merged and synced")


@access_group.command("deny")
@click.argument("request_id", type=int)
@click.option("--note", help="Why, for the requester.")
@pass_ctx
def access_deny(ctx: Context, request_id: int, note: str | None) -> None:
    """Deny a request (as a member of the owning team). Nothing else changes."""
    from generator.catalog.access_requests import decide, get_request

    mesh = ctx.mesh()
    with _catalog(ctx) as conn:
        request = get_request(conn, request_id)
        entry = _entry(mesh, request.domain, request.product)
        decided = decide(conn, request, entry.spec, mesh.domain(request.domain), approve=False, note=note)
    click.echo(f"access request {decided.id} denied by {decided.decided_by}")


@access_group.command("list")
@click.argument("product", required=False)
@click.option("--status", type=click.Choice(["pending", "approved", "denied"]))
@pass_ctx
def access_list(ctx: Context, product: str | None, status: str | None) -> None:
    """Access requests, oldest first."""
    from generator.catalog.access_requests import list_requests

    key = ctx.mesh().select(product)[0].spec.key if product else None
    with _catalog(ctx) as conn:
        requests = list_requests(conn, status, key)
    for r in requests:
        decided = f" by {r.decided_by}" if r.decided_by else ""
        who = f"({r.requested_by}: {r.reason})"
        click.echo(f"{r.id:>5}  {r.status:8}{decided}  {r.role} -> {r.domain}/{r.product}  {who}")
    if not requests:
        click.echo("no access requests")


@access_group.command("history")
@click.argument("product", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def access_history(ctx: Context, product: str | None, fmt: str) -> None:
    """The grant history from the audit log: requests, decisions, grants and revokes."""
    from generator.catalog.access_requests import grant_history

    spec = ctx.mesh().select(product)[0].spec if product else None
    with _catalog(ctx) as conn:
        entries = grant_history(conn, spec.domain if spec else None, spec.name if spec else None)
    if fmt == "json":
        click.echo(json.dumps(entries, default=str, indent=2))
        return
    for e in entries:
        click.echo(f"{e['at']:%Y-%m-%d %H:%M}  {e['action']:7} {e['domain']}/{e['product']}  {e['actor']}  "
                   f"{json.dumps(e['details'], sort_keys=True)}")


def _entry(mesh: Mesh, domain: str, product: str) -> ProductEntry:
    entry = mesh.find(domain, product)
    if entry is None:
        raise UserError(f"the request is for {domain}/{product}, which is not a product of this mesh any more")
    return entry
