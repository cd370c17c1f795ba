"""`datamesh contract export|import`: a product's ODCS v3 data contract, and a new product from one.

Export: the contract of a product's current major version, with the server of its published
schema on this deployment's warehouse (connection settings only: nothing is started). Import: the
spec a contract describes, checked as `datamesh new` checks its answers (the spec's rules, the mesh,
the domain registry, the blocking policies), then written and rendered by the same code
(`cli/new.py:create`, skeleton models included). What the spec cannot express is listed, on screen
and at the top of the spec; a contract with problems is refused whole and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.context import Context, pass_ctx
from generator.errors import Problem, SpecError, UserError
from generator.layout import DBT_DIR, SPEC_FILENAME

FORMATS = ("odcs",)


@click.group("contract")
def contract_group() -> None:
    """Data contracts in the Open Data Contract Standard (ODCS v3): export a product's, import one."""


@contract_group.command("export")
@click.argument("product")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="odcs", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not to stdout.")
@pass_ctx
def export(ctx: Context, product: str, fmt: str, output: Path | None) -> None:
    """Write PRODUCT's data contract: schema, types, constraints, quality rules, SLA, owner,
    classification, PII, and the server of its published schema."""
    from generator.contract.export import checked_contract, to_yaml

    entries = ctx.mesh().select(product)
    if len(entries) != 1:
        raise UserError(f"{product!r} names {len(entries)} products; name one (<domain>/<product>)")
    text = to_yaml(checked_contract(entries[0].spec, server_location(ctx.root)))
    if output is None:
        click.echo(text, nl=False)
        return
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)
    click.echo(f"Wrote the ODCS contract of {entries[0].spec.domain}/{entries[0].spec.name} to {output}", err=True)


def server_location(root: Path):  # type: ignore[no-untyped-def]
    """The warehouse as the deployment's connection settings name it (warehouse/connection.py)."""
    from generator.contract.export import ServerLocation
    from generator.warehouse.connection import from_environment

    found = from_environment(root, start=False)
    return ServerLocation(found.host, found.port, found.dbname)


@contract_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--domain", help="The owning domain (instead of the contract's `domain`).")
@click.option("--check", "check_only", is_flag=True, help="Check and list what would not be carried; write nothing.")
@pass_ctx
def import_contract(ctx: Context, file: Path, domain: str | None, check_only: bool) -> None:
    """Create a product from an ODCS v3 contract FILE: its spec and skeleton models, rendered.

    Parts of the contract the spec cannot express are listed (and kept as a comment at the top of the
    spec). Problems (not ODCS v3, a value the spec refuses, a product that exists already, ...) are
    listed with their place in the contract, and nothing is written."""
    from generator.cli.new import check_imported, create
    from generator.contract.import_ import read_contract

    ctx.require_repo()
    shown = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(shown, "", f"cannot read the file: {exc}")]) from None
    imported = read_contract(text, shown, domain)
    mesh = check_imported(ctx.root, imported)
    notes = imported.notes
    if notes:
        click.echo(f"{len(notes)} part(s) of the contract are not carried over into the spec:")
        for note in notes:
            click.echo(f"  {note}")
    if check_only:
        click.echo(f"{imported.product.domain}/{imported.product.name}: the contract can be imported (--check: "
                   "nothing was written)")
        return
    comment = ""
    if notes:
        comment = f"# Imported from {file.name}. Not carried over from the contract:\n" + "".join(
            f"#   {note.path or '<root>'}: {note.message}\n" for note in notes
        )
    try:
        create(ctx.root, imported.spec, None, mesh, comment)
    except Exception as exc:  # noqa: BLE001 - rolled back; say what failed
        raise UserError(f"{exc}\nNothing was kept: the repo is as it was.") from None
    click.echo(_summary(imported.spec))


def _summary(spec: dict) -> str:  # type: ignore[type-arg]
    base = f"{DBT_DIR}/{spec['domain']}/{spec['name']}"
    lines = [f"\nCreated data product {spec['domain']}/{spec['name']} from the contract:"]
    lines.append(f"  {base}/{SPEC_FILENAME}  the spec: yours to edit")
    lines += [f"  {base}/models/{o['name']}.sql  a skeleton model: write its query" for o in spec["outputs"]]
    lines.append(f"  dags/{spec['domain']}.py  the domain's DAGs, this one's among them (generated)")
    lines.append(f"Next: write the models, then `datamesh validate {spec['domain']}/{spec['name']}`.")
    return "\n".join(lines)
