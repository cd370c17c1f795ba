"""`datamesh domains`: the domain registry with each domain's products and their health. Registered
in main.py."""

from __future__ import annotations

import json
from typing import Any

import click

from generator.cli.context import Context, pass_ctx


@click.command("domains")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
@click.option("--no-health", is_flag=True, help="The registry only: do not read the catalog.")
@pass_ctx
def domains(ctx: Context, fmt: str, no_health: bool) -> None:
    """Domains (domains/<domain>.yaml) with their owner, on-call, products and the products' health:
    last run outcome and freshness against the SLA, from the catalog."""
    mesh = ctx.mesh()
    health = {} if no_health else _health(ctx)
    listed = []
    for name in sorted(set(mesh.domains) | {p.spec.domain for p in mesh.products}):
        domain = mesh.domain(name)
        products = []
        for entry in (p for p in mesh.products if p.spec.domain == name):
            found = health.get(entry.spec.key)
            products.append({
                "product": entry.spec.name, "version": entry.spec.version, "owner_team": entry.spec.owner.team,
                "health": _status(found), **({"run": found} if found else {}),
            })
        listed.append({
            "domain": name,
            "registry": mesh.domains[name].shown if domain else None,
            "owner_team": domain.owner_team if domain else None,
            "teams": domain.team_names if domain else [],
            "on_call": domain.on_call.email if domain else None,
            "chat_channel": domain.chat_channel if domain else None,
            "members": len(domain.members) if domain else 0,
            "products": sorted(products, key=lambda p: p["product"]),
        })
    if fmt == "json":
        click.echo(json.dumps(listed, indent=2, default=str))
        return
    for d in listed:
        click.echo(click.style(d["domain"], bold=True) + (
            f"  owner {d['owner_team']} · on call {d['on_call']}"
            + (f" · {d['chat_channel']}" if d["chat_channel"] else "")
            + f" · {d['members']} member(s)  ({d['registry']})"
            if d["registry"] else "  (no registry file)"
        ))
        for p in d["products"]:
            click.echo(f"  {p['product']:32} {p['version']:8} {p['owner_team']:22} {p['health']}")
        if not d["products"]:
            click.echo("  no products yet")


def _health(ctx: Context) -> dict[str, dict[str, Any]]:
    from generator.catalog import store
    from generator.catalog.card import product_health
    from generator.warehouse.connection import from_environment

    conn = from_environment(ctx.root).connect()
    try:
        store.ensure_current(conn)
        return product_health(conn)
    finally:
        conn.close()


def _status(found: dict[str, Any] | None) -> str:
    """'ok' (last run succeeded, fresh), 'stale', 'failing' or 'never run'."""
    if found is None or found["last_outcome"] is None:
        return "never run"
    if found["last_outcome"] == "failed":
        return "failing"
    if not found["fresh"]:
        age = found["age_hours"]
        return f"stale ({age:.0f} h old, SLA {found['freshness_hours']:g} h)" if age is not None else "stale"
    return "ok"
