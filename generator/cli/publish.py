"""`datamesh rollback PRODUCT`: re-publish the previous build of a product. Registered in cli.py."""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

import click

from generator.errors import CheckFailed, RunFailed
from generator.layout import CATALOG_SCHEMA

if TYPE_CHECKING:
    from generator.cli.context import Context


@click.command()
@click.argument("product")
@click.pass_obj
def rollback(ctx: Context, product: str) -> None:
    """Point PRODUCT's published views back at its previous snapshot (same major version).

    The grants are those of the spec as it is now. The last 3 published builds are kept; each
    rollback goes one build further back.
    """
    from generator.catalog import store
    from generator.platform import publish
    from generator.warehouse.connection import from_environment

    entries = ctx.mesh().select(product)
    if len(entries) != 1:
        raise CheckFailed(f"{product!r} names {len(entries)} products; name one as <domain>/<product>")
    spec = entries[0].spec
    with closing(from_environment(ctx.root).connect()) as conn:
        try:
            result = publish.rollback(conn, spec)
        except RunFailed as exc:
            raise CheckFailed(str(exc)) from exc
        store.migrate(conn)
        store.record_audit(
            conn, "rollback", spec.domain, spec.name, version=spec.version,
            details={"schema": result.schema, "from_snapshot": result.replaced, "to_snapshot": result.snapshot,
                     "latest": result.latest, "rows": result.rows},
        )
    rows = ", ".join(f"{name}: {count}" for name, count in result.rows.items())
    click.echo(f"rolled back {result.schema}: {result.replaced} -> {result.snapshot} ({rows})")
    if result.latest:
        click.echo(f"{result.latest} (latest) reads {result.snapshot} too")
    click.echo(f"recorded in {CATALOG_SCHEMA}.audit_log")
