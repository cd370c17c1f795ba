"""The `datamesh` command line. Thin: each command calls library code and prints its result.

Exit codes: 0 ok, 1 a check failed (drift, a blocking policy, a failed demo run), 2 bad input.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from generator.cli.access import access_group, grants_group
from generator.cli.catalog import docs, echo_json, impact, lineage, output_format, report, search, show, subscribe
from generator.cli.console import console
from generator.cli.context import Context, pass_ctx
from generator.cli.contract import contract_group
from generator.cli.domains import domains
from generator.cli.fresh_verdicts import failed_findings
from generator.cli.migrate import migrate
from generator.cli.new import new
from generator.cli.platform import platform_group
from generator.cli.policy import compliance_group, diff, policy
from generator.cli.publish import rollback
from generator.cli.upgrade import show_plan, upgrade
from generator.cli.usage import usage_group
from generator.cli.validation_cache import ValidationCache, Verdict, verdict_of
from generator.errors import CheckFailed, SpecError, UserError
from generator.layout import find_root
from generator.render.rendered import Rendered
from generator.runtime.gc_tuning import collect_less_often

if TYPE_CHECKING:
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
    """Check specs (all, or one PRODUCT) and their static policies. Writes nothing.

    Products whose spec, inputs' specs, policies and generator are unchanged since the last run
    print the findings remembered then (.datamesh/cache/validate.json)."""
    try:
        verdicts = _verdicts(ctx, product)
    except SpecError as exc:
        if fmt == "json":  # the problems as data too; still exit 2
            echo_json({"products": [], "problems": [asdict(p) for p in exc.problems]})
        raise
    if fmt == "json":
        echo_json({"products": [_validation(name, verdict) for name, verdict in verdicts.items()]})
        blocked = sum(any(f.enforcement == "blocking" for f in v.findings) for v in verdicts.values())
        if blocked:
            raise CheckFailed(f"{blocked} product(s) violate blocking policies")
        return
    blocked = 0
    for name, verdict in verdicts.items():
        blocking = [f for f in verdict.findings if f.enforcement == "blocking"]
        blocked += bool(blocking)
        mark = click.style("FAIL", fg="red") if blocking else click.style("  ok", fg="green")
        click.echo(f"{mark}  {name} {verdict.version}  ({verdict.shown})")
        _echo_findings(verdict.findings)
    if blocked:
        raise CheckFailed(f"{blocked} product(s) violate blocking policies")


def _validation(name: str, verdict: Verdict) -> dict:  # type: ignore[type-arg]
    """One product of `validate --format json` (docs/interop.md)."""
    return {
        "product": name,
        "version": verdict.version,
        "spec": verdict.shown,
        "ok": not any(f.enforcement == "blocking" for f in verdict.findings),
        "findings": [
            {"policy": f.policy, "enforcement": f.enforcement, "message": f.message} for f in verdict.findings
        ],
    }


def _verdicts(ctx: Context, product: str | None) -> dict[str, Verdict]:
    """Each product's verdict, in dependency order: from the cache where its key still matches,
    else from its spec, parsed and evaluated now. With PRODUCT: that product's, evaluated now."""
    if product:
        mesh = ctx.mesh()
        return {
            f"{e.spec.domain}/{e.spec.name}": verdict_of(e, findings)
            for e, findings in _static_findings(ctx, _domains(mesh), mesh.select(product))
        }
    from generator.render.fingerprint import SpecDigests
    from generator.render.incremental import product_names

    ctx.require_repo()
    products = product_names(ctx.root)
    cache = ValidationCache(ctx.root)
    digests = SpecDigests(ctx.root)
    verdicts: dict[str, Verdict] = {}
    graph: dict[str, set[str]] = {}  # product -> the products it reads
    for name in products:
        reads = cache.reads(name)
        cached = cache.verdict(name, digests.inputs_hash(name, reads)) if reads is not None else None
        if cached is not None and reads is not None:
            verdicts[name], graph[name] = cached, set(reads)
    domains = sorted({name.split("/")[0] for name in products})
    warnings = cache.warnings.get(",".join(domains))
    stale = [name for name in products if name not in verdicts]
    if stale or warnings is None:
        from generator.cli.fresh_verdicts import fresh_verdicts

        warnings, fresh = fresh_verdicts(ctx.root, stale, {name: graph[name] for name in verdicts}, domains)
        cache.warnings[",".join(domains)] = warnings
        for found in fresh:
            graph[found.name], verdicts[found.name] = set(found.reads), found.verdict
            cache.remember(found.name, digests.inputs_hash(found.name, found.reads), found.reads, found.verdict)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    cache.save(products)
    return {name: verdicts[name] for name in _dependency_order(graph)}


def _dependency_order(graph: dict[str, set[str]]) -> list[str]:
    from graphlib import TopologicalSorter

    sorter = TopologicalSorter(graph)
    sorter.prepare()  # the specs were cross-checked: no cycle
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered += ready
        sorter.done(*ready)
    return [name for name in ordered if name in graph]


def _domains(mesh: Mesh) -> list[str]:
    return sorted({e.spec.domain for e in mesh.products})


def _policies(ctx: Context, domains: list[str]):  # -> MeshPolicies (imported late: CEL is heavy)
    """Every policy file, loaded and checked once (see `policies.load_all_policies`)."""
    from generator.governance.policies import load_all_policies

    return load_all_policies(ctx.root, domains)


def _judge(loaded, entries: list[ProductEntry]) -> list[tuple[ProductEntry, list]]:
    return [(entry, failed_findings(loaded, entry)) for entry in entries]


def _static_findings(
    ctx: Context, domains: list[str], entries: list[ProductEntry]
) -> list[tuple[ProductEntry, list]]:
    """The failed static policy findings of each product (policies/ global + its domain's). Every
    policy file is loaded once, and checked, before any product is evaluated; a domain file that
    applies to no product is reported as a warning (see `policies.load_all_policies`)."""
    if not entries:
        return []
    loaded = _policies(ctx, domains)
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    return _judge(loaded, entries)


def _echo_findings(findings: list, err: bool = False) -> None:
    for finding in findings:
        level = "blocking" if finding.enforcement == "blocking" else "warning"
        click.echo(f"      {level}: [{finding.policy}] {finding.message}", err=err)


@dataclass
class _Render:
    """What a render produces now, and where files it produced before may have gone stale."""

    rendered: Rendered
    scope: list[str]
    entries: list[ProductEntry]  # the products rendered now
    domains: list[str]  # every domain of the mesh (for the policy loader's warnings)
    products: int  # products covered: every product of the mesh, or the one selected
    current: int = 0  # generated files skipped: their headers' hashes show them current


def _render(ctx: Context, product: str | None, full: bool) -> _Render:
    """With PRODUCT or --full: every selected product, from its parsed spec. Otherwise only the
    products whose inputs hash changed (render/incremental.py), and the JSON Schema if it did."""
    from generator.render.mesh import (
        SCHEMA_PATH,
        SCHEMA_PATHS,
        render_all,
        render_changed,
        render_products,
        schema_unless_current,
        stale_scope,
        with_producers,
    )

    if product or full:
        mesh = ctx.mesh()
        entries = mesh.select(product) if product is None else with_producers(mesh, mesh.select(product))
        rendered = render_all(mesh, entries) if product is None else render_products(mesh, entries)
        return _Render(rendered, stale_scope(mesh, entries), entries, _domains(mesh), len(entries))
    from generator.render.incremental import plan

    ctx.require_repo()
    known = plan(ctx.root)
    rendered = schema_unless_current(ctx.root)
    changed = render_changed(ctx.root, known)
    rendered = rendered.merge(changed.rendered)
    current = known.current - changed.again  # producers counted current by the plan, rendered again
    domains = sorted({name.split("/")[0] for name in known.products})
    current += 0 if SCHEMA_PATH in rendered.generated else len(SCHEMA_PATHS)
    return _Render(rendered, known.maybe_stale, changed.entries, domains, len(known.products), current)


@cli.command()
@click.argument("product", required=False)
@click.option("--check", "check_only", is_flag=True, help="Write nothing; fail if files would change.")
@click.option("--diff", "show_diff", is_flag=True, help="With --check: show what would change.")
@click.option("--full", is_flag=True, help="Render every product, even those whose hashes are unchanged.")
@click.option(
    "--plan", "plan_only", is_flag=True,
    help="Write nothing: per product, the generated files that would change and why (hand edits shown).",
)
@pass_ctx
def render(ctx: Context, product: str | None, check_only: bool, show_diff: bool, full: bool, plan_only: bool) -> None:
    """Render dbt projects and DAGs from the specs (all, or one PRODUCT).

    A product is rendered again only when something its files depend on changed (its spec, its
    inputs' specs, the generator, the card-link settings) or a file was edited or removed: each
    generated file's header holds the hash it was rendered from."""
    from generator.render.mesh import remember_schema
    from generator.render.write import apply

    if plan_only:
        show_plan(ctx, show_diff)
        return
    if check_only:
        _check(ctx, product, show_diff, full)
        return
    from generator.parallel import meanwhile

    plan = _render(ctx, product, full)
    # Policies are evaluated here too, for the products rendered now, and reported, but do not
    # stop the render: the DAG's gate enforces them at publish, and CI's `datamesh policy check`.
    # While the files are written (in a forked process when the products are many), and before
    # any is renamed into place: a broken policy file is bad input, and changes nothing.
    def judge() -> tuple[list[str], list[list]]:
        if not plan.entries:
            return [], []
        loaded = _policies(ctx, plan.domains)
        # Only the findings come back from the forked process, not the (large) entries.
        return list(loaded.warnings), [failed_findings(loaded, entry) for entry in plan.entries]

    with meanwhile(judge, len(plan.entries)) as judging:
        report = apply(ctx.root, plan.rendered, plan.scope, before_commit=judging)
        warnings, findings = judging()
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    judged = list(zip(plan.entries, findings, strict=True))
    remember_schema(ctx.root, plan.rendered)
    lines = [f"wrote    {rel}" for rel in report.written]
    lines += [f"created  {rel}  (yours from now on: never overwritten)" for rel in report.created]
    lines += [f"removed  {rel}  (no spec produces it any more)" for rel in report.removed]
    if lines:
        click.echo("\n".join(lines))  # one write: a full render lists 8,000 files
    unchanged = len(report.unchanged) + plan.current
    click.echo(
        f"{plan.products} product(s), {len(plan.entries)} rendered: {len(report.written)} written, "
        f"{unchanged} unchanged, {len(report.created)} created, {len(report.kept)} user-owned kept, "
        f"{len(report.removed)} removed"
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
@click.option("--full", is_flag=True, help="Render every product to compare, even those whose hashes match.")
@pass_ctx
def check(ctx: Context, product: str | None, quiet: bool, full: bool) -> None:
    """Fail (exit 1) with a diff when committed generated files are stale: the CI drift gate.

    Products whose files' header hashes match their specs are not rendered: a hand edit shows as a
    body hash that no longer matches, and that product is rendered to show the diff."""
    _check(ctx, product, not quiet, full)


def _check(ctx: Context, product: str | None, show_diff: bool, full: bool) -> None:
    from generator.render.mesh import remember_schema
    from generator.render.write import drift

    plan = _render(ctx, product, full)
    changes = drift(ctx.root, plan.rendered, plan.scope)
    for change in changes:
        click.echo(f"{change.kind:8} {change.path}")
        if show_diff:
            click.echo(change.diff)
    if changes:
        raise CheckFailed(f"{len(changes)} generated file(s) are stale: run `datamesh render` and commit")
    remember_schema(ctx.root, plan.rendered)
    files = len(plan.rendered.generated) + plan.current
    click.echo(f"up to date: {files} generated files of {plan.products} product(s)")


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@click.option("--domain", "of_domain", is_flag=True, help="The domain registry file's schema (domains/*.yaml).")
def schema(output: Path | None, of_domain: bool) -> None:
    """Print the spec's JSON Schema (editors use it to complete and check specs)."""
    from generator.render.mesh import domain_json_schema, json_schema

    text = domain_json_schema() if of_domain else json_schema()
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
cli.add_command(new)  # a new product, answers checked as typed: generator/cli/new.py
cli.add_command(migrate)  # specs of an older spec_version: generator/cli/migrate.py
cli.add_command(upgrade)  # the upgrade plan, then the upgrade: generator/cli/upgrade.py
cli.add_command(usage_group)  # reads measured by PostgreSQL: generator/cli/usage.py
cli.add_command(domains)  # the domain registry: generator/cli/domains.py
cli.add_command(grants_group)  # access without a data build: generator/cli/access.py
cli.add_command(access_group)
cli.add_command(console)  # the operations console in Airflow: generator/cli/console.py
cli.add_command(contract_group)  # ODCS data contracts: generator/cli/contract.py


def main() -> None:
    debug = "--debug" in sys.argv
    # A command holds the specs it loaded until it ends: at 1,000 products, the collector's default
    # thresholds walked them in four full collections, 0.3 s of a render (runtime/gc_tuning.py).
    collect_less_often()
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
