"""`datamesh domains`: the domain registry with each domain's products and their health, and
`datamesh domains new`, which registers a domain (a product's domain must be registered before
`datamesh new` or the cookiecutter template accept it). Registered in main.py."""

from __future__ import annotations

import json
from typing import Any

import click

from generator.cli.context import Context, pass_ctx
from generator.errors import SpecError, UserError
from generator.layout import DOMAINS_DIR


@click.group("domains", invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format.")
@click.option("--no-health", is_flag=True, help="The registry only: do not read the catalog.")
@pass_ctx
def domains(ctx: Context, fmt: str, no_health: bool) -> None:
    """Domains (domains/<domain>.yaml) with their owner, on-call, products and the products' health:
    last run outcome and freshness against the SLA, from the catalog. `domains new` registers one."""
    if click.get_current_context().invoked_subcommand is None:
        _list(ctx, fmt, no_health)


@domains.command("new")
@click.argument("name")
@click.option("--owner-team", required=True, help="The team that owns the domain and its first products.")
@click.option("--email", required=True, help="The owner team's address (also the on-call address, to start).")
@click.option("--description", help="What the domain is about (a placeholder to complete otherwise).")
@click.option("--bounded-context", help="The part of the business whose language its products speak.")
@pass_ctx
def new_domain(
    ctx: Context, name: str, owner_team: str, email: str, description: str | None, bounded_context: str | None
) -> None:
    """Register a domain: write domains/NAME.yaml, owned by --owner-team.

    The smallest valid registry file, checked by the registry's own rules; complete it by hand
    (description, members, on-call, more teams). A product's domain must be registered before
    `datamesh new` accepts it. Nothing is written if an argument breaks the rules or the file exists."""
    from generator.spec.domain import domain_file, new_domain_text
    from generator.spec.mesh import spec_paths

    ctx.require_repo()
    path = ctx.root / domain_file(name)
    if path.exists():
        raise UserError(f"{domain_file(name)} exists already: domain {name!r} is registered; nothing was written")
    try:
        text = new_domain_text(name, owner_team, email, description, bounded_context)
    except SpecError as exc:
        lines = dict.fromkeys(f"  {_argument(p.path)}: {p.message}" for p in exc.problems)
        raise UserError(f"{domain_file(name)} was not written:\n" + "\n".join(lines)) from None
    registry = ctx.root / DOMAINS_DIR
    first = not registry.is_dir()
    registry.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"Registered domain {name}: {domain_file(name)} (owner team {owner_team}).")
    if first:
        # A registry, once there, is checked for every domain with products (generator/spec/domain.py).
        unregistered = sorted({p.parent.parent.name for p in spec_paths(ctx.root)} - {name})
        if unregistered:
            click.echo(
                "warning: this repo had no domain registry; each domain with products needs its file too: "
                + ", ".join(domain_file(d) for d in unregistered),
                err=True,
            )
    click.echo(f"Next: complete {domain_file(name)} (description, members, on-call), then `datamesh new`.")


def _argument(path: str) -> str:
    """The argument of `domains new` that a field of the file it writes came from."""
    parts = path.split(".")
    top, last = parts[0], parts[-1]
    if top in ("teams", "on_call"):
        return "--email" if last == "email" else "--owner-team"
    return {"name": "NAME", "owner_team": "--owner-team"}.get(top, f"--{top.replace('_', '-')}")


def _list(ctx: Context, fmt: str, no_health: bool) -> None:
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
    from generator.catalog.card import product_health

    with ctx.catalog() as conn:
        return product_health(conn)


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
