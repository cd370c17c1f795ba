"""The `datamesh` command line. Thin: each command calls library code and prints its result.

Exit codes: 0 ok, 1 a check failed (drift, a blocking policy, a failed demo run), 2 bad input.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import asdict
from pathlib import Path

import click

from generator.cli.catalog import docs, echo_json, impact, lineage, output_format, report, search, show, subscribe
from generator.cli.context import Context, pass_ctx
from generator.cli.platform import platform_group
from generator.cli.policy import compliance_group, diff, policy
from generator.cli.publish import rollback
from generator.errors import CheckFailed, SpecError, UserError
from generator.layout import find_root
from generator.spec.mesh import Mesh, ProductEntry


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DATAMESH_ROOT",
    help="The repo: the folder holding dbt/, dags/ and policies/. Env: DATAMESH_ROOT. "
    "Default: the current folder or the nearest parent that holds them.",
)
@click.option("--debug", is_flag=True, envvar="DATAMESH_DEBUG", help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, debug: bool) -> None:
    """Self-serve data products: one spec per product becomes a dbt project and an Airflow DAG.

    Specs live in dbt/<domain>/<product>/data_product.yaml. PRODUCT arguments take
    <domain>/<product>, <domain>__<product>, just <product>, or the path of its spec or folder.
    """
    ctx.obj = Context(root if root is not None else find_root(Path.cwd()), debug)


@cli.command()
@click.argument("product", required=False)
@output_format("text")
@pass_ctx
def validate(ctx: Context, product: str | None, fmt: str) -> None:
    """Check specs (all, or one PRODUCT) and their static policies. Writes nothing."""
    try:
        mesh = ctx.mesh()
    except SpecError as exc:
        if fmt == "json":  # the problems as data too; still exit 2
            echo_json({"products": [], "problems": [asdict(p) for p in exc.problems]})
        raise
    judged = _static_findings(ctx, mesh, mesh.select(product))
    if fmt == "json":
        echo_json({"products": [_validation(entry, findings) for entry, findings in judged]})
        blocked = sum(any(f.enforcement == "blocking" for f in findings) for _, findings in judged)
        if blocked:
            raise CheckFailed(f"{blocked} product(s) violate blocking policies")
        return
    blocked = 0
    for entry, findings in judged:
        blocking = [f for f in findings if f.enforcement == "blocking"]
        blocked += bool(blocking)
        mark = click.style("FAIL", fg="red") if blocking else click.style("  ok", fg="green")
        click.echo(f"{mark}  {entry.spec.domain}/{entry.spec.name} {entry.spec.version}  ({entry.shown})")
        _echo_findings(findings)
    if blocked:
        raise CheckFailed(f"{blocked} product(s) violate blocking policies")


def _validation(entry: ProductEntry, findings: list) -> dict:  # type: ignore[type-arg]
    """One product of `validate --format json` (docs/interop.md)."""
    return {
        "product": f"{entry.spec.domain}/{entry.spec.name}",
        "version": entry.spec.version,
        "spec": entry.shown,
        "ok": not any(f.enforcement == "blocking" for f in findings),
        "findings": [
            {"policy": f.policy, "enforcement": f.enforcement, "subject": f.subject, "message": f.message}
            for f in findings
        ],
    }


def _static_findings(
    ctx: Context, mesh: Mesh, entries: list[ProductEntry]
) -> list[tuple[ProductEntry, list]]:
    """The failed static policy findings of each product (policies/ global + its domain's). Every
    policy file is loaded once, and checked, before any product is evaluated; a domain file that
    applies to no product is reported as a warning (see `policies.load_all_policies`)."""
    from generator.governance.policies import evaluate_spec, load_all_policies

    loaded = load_all_policies(ctx.root, {e.spec.domain for e in mesh.products})
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    return [
        (entry, [f for f in evaluate_spec(loaded.for_domain(entry.spec.domain), entry.spec) if not f.passed])
        for entry in entries
    ]


def _echo_findings(findings: list, err: bool = False) -> None:
    for finding in findings:
        level = "blocking" if finding.enforcement == "blocking" else "warning"
        click.echo(f"      {level}: [{finding.policy}] {finding.message}", err=err)


@cli.command()
@click.argument("product", required=False)
@click.option("--check", "check_only", is_flag=True, help="Write nothing; fail if files would change.")
@click.option("--diff", "show_diff", is_flag=True, help="With --check: show what would change.")
@pass_ctx
def render(ctx: Context, product: str | None, check_only: bool, show_diff: bool) -> None:
    """Render dbt projects and DAGs from the specs (all, or one PRODUCT)."""
    from generator.render.mesh import render_all, render_products, stale_scope
    from generator.render.write import apply

    mesh = ctx.mesh()
    entries = mesh.select(product)
    if check_only:
        _check(ctx, mesh, entries, show_diff)
        return
    # Policies are evaluated here too, and reported, but do not stop the render: the DAG's gate
    # enforces them at publish, and CI's `datamesh policy check` before merge.
    judged = _static_findings(ctx, mesh, entries)
    rendered = render_all(mesh, entries) if product is None else render_products(mesh, entries)
    report = apply(ctx.root, rendered, stale_scope(mesh, entries))
    for rel in report.written:
        click.echo(f"wrote    {rel}")
    for rel in report.created:
        click.echo(f"created  {rel}  (yours from now on: never overwritten)")
    for rel in report.removed:
        click.echo(f"removed  {rel}  (no spec produces it any more)")
    click.echo(
        f"{len(entries)} product(s): {len(report.written)} written, {len(report.unchanged)} unchanged, "
        f"{len(report.created)} created, {len(report.kept)} user-owned kept, {len(report.removed)} removed"
    )
    for entry, findings in judged:
        blocking = sum(f.enforcement == "blocking" for f in findings)
        if not findings:
            continue
        verdict = "its publish will be blocked by the gate" if blocking else "warnings only"
        click.echo(f"policies: {entry.spec.domain}/{entry.spec.name}: {verdict}", err=True)
        _echo_findings(findings, err=True)


@cli.command()
@click.argument("product", required=False)
@click.option("--quiet", is_flag=True, help="Only the summary, no diff.")
@pass_ctx
def check(ctx: Context, product: str | None, quiet: bool) -> None:
    """Fail (exit 1) with a diff when committed generated files are stale: the CI drift gate."""
    mesh = ctx.mesh()
    _check(ctx, mesh, mesh.select(product), show_diff=not quiet)


def _check(ctx: Context, mesh: Mesh, entries: list, show_diff: bool) -> None:
    from generator.render.mesh import render_all, render_products, stale_scope
    from generator.render.write import drift

    full = len(entries) == len(mesh.products)
    rendered = render_all(mesh, entries) if full else render_products(mesh, entries)
    changes = drift(ctx.root, rendered, stale_scope(mesh, entries))
    for change in changes:
        click.echo(f"{change.kind:8} {change.path}")
        if show_diff:
            click.echo(change.diff)
    if changes:
        raise CheckFailed(f"{len(changes)} generated file(s) are stale: run `datamesh render` and commit")
    click.echo(f"up to date: {len(rendered.generated)} generated files of {len(entries)} product(s)")


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def schema(output: Path | None) -> None:
    """Print the spec's JSON Schema (editors use it to complete and check specs)."""
    from generator.render.mesh import json_schema

    text = json_schema()
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--product", "only", help="Run only this product (its inputs must be published already).")
@click.option("--skip-render", is_flag=True, help="Use the committed dbt/ and dags/ as they are.")
@click.option(
    "--seed-demo-data",
    is_flag=True,
    envvar="DATAMESH_DEMO_SEED",
    help="Allow writing the demo's source data (*_ops tables) into a warehouse that is not the embedded "
    "one (PGHOST set). Env: DATAMESH_DEMO_SEED=1.",
)
@pass_ctx
def demo(ctx: Context, only: str | None, skip_render: bool, seed_demo_data: bool) -> None:
    """Render the example mesh, seed source data and run every product's DAG with `airflow dags test`."""
    from generator.dev.demo import run_demo

    ok = run_demo(ctx.root, only=only, render=not skip_render, echo=click.echo, seed_demo_data=seed_demo_data)
    if not ok:
        raise CheckFailed("at least one product's run failed; see its log above")


@cli.group()
def db() -> None:
    """The warehouse: the PG* variables' server, or the embedded one in .datamesh/pg."""


@db.command("url")
@pass_ctx
def db_url(ctx: Context) -> None:
    """Start the embedded server if needed and print how to connect (psql arguments)."""
    from generator.warehouse.connection import from_environment

    wh = from_environment(ctx.root)
    click.echo(wh.describe())
    click.echo(f"psql -h {wh.host} -p {wh.port} -U {wh.user} {wh.dbname}")


@db.command("stop")
@pass_ctx
def db_stop(ctx: Context) -> None:
    """Stop the embedded PostgreSQL, if it runs."""
    from generator.layout import EMBEDDED_PG_DIR
    from generator.warehouse.connection import stop_embedded

    stopped = stop_embedded(ctx.root / EMBEDDED_PG_DIR)
    click.echo("stopped" if stopped else "not running")


# The everyday commands live in their own modules, one per area.
cli.add_command(search)  # discovery and lineage: generator/cli_catalog.py
cli.add_command(show)
cli.add_command(lineage)
cli.add_command(impact)
cli.add_command(subscribe)
cli.add_command(report)
cli.add_command(docs)
cli.add_command(rollback)  # publish management: generator/cli_publish.py
cli.add_command(policy)  # governance: generator/cli_policy.py
cli.add_command(compliance_group)
cli.add_command(diff)  # breaking changes before merge: generator/governance/diff.py
cli.add_command(platform_group)  # the platform team's setup: generator/cli/platform.py


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(click.style("Error: ", fg="red", bold=True) + str(exc), err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one boundary for the unexpected
        if debug:
            traceback.print_exc()
        else:
            click.echo(
                click.style("Error: ", fg="red", bold=True) + f"{type(exc).__name__}: {exc}\n"
                "(run with --debug for the traceback)",
                err=True,
            )
        sys.exit(3)


if __name__ == "__main__":
    main()
