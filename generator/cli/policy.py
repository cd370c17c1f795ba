"""`datamesh policy check` (static governance, what CI runs), `datamesh compliance report` and
`datamesh diff` (breaking changes since a git ref).

Exit codes of `policy check`: 0 every policy passed, 1 a blocking violation, 2 bad input (a broken
spec or policy file, nothing evaluated), 4 warnings only (0 with --warnings-ok). A domain policy file
that matches no product's domain (a misspelt name, or a domain without products yet) is a warning.
"""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.catalog import echo_json, output_format
from generator.cli.context import Context, pass_ctx
from generator.errors import CheckFailed, UserError

EXIT_WARNINGS = 4


class WarningsFound(UserError):
    """Only warning-level policies failed: not a blocking violation, but not clean either."""

    exit_code = EXIT_WARNINGS


# `policy check` and `diff` report the same ways (CI reads either as JUnit).
report_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit"]),
    default="text",
    show_default=True,
    help="text for a terminal, json for tools, junit (XML) for CI test reports.",
)
report_output = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file."
)


@click.group("policy")
def policy() -> None:
    """Governance policies (policies/*.yaml, CEL) on the specs."""


@policy.command("check")
@click.argument("product", required=False)
@report_format
@report_output
@click.option("--warnings-ok", is_flag=True, help="Exit 0 (not 4) when only warnings were found.")
@click.option(
    "--record", is_flag=True, help="Also write a static compliance record per product to the catalog."
)
@pass_ctx
def check(
    ctx: Context, product: str | None, fmt: str, output: Path | None, warnings_ok: bool, record: bool
) -> None:
    """Evaluate the policies on the specs (all, or one PRODUCT).

    Exit 0: all passed; 1: a blocking violation; 2: bad input; 4: warnings only.
    """
    from generator.governance import policy_report
    from generator.governance.policies import evaluate_spec, load_all_policies

    mesh = ctx.mesh()
    entries = mesh.select(product)
    # Every policy file is validated, each loaded once, before any product is evaluated: also the
    # files of domains that have no product (a broken one is bad input all the same).
    loaded = load_all_policies(ctx.root, {e.spec.domain for e in mesh.products})
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    checks = [
        policy_report.ProductCheck(
            e.spec.key,
            f"{e.spec.domain}/{e.spec.name}",
            e.spec.version,
            e.shown,
            evaluate_spec(loaded.for_domain(e.spec.domain), e.spec),
        )
        for e in entries
    ]
    if fmt == "json":
        text = policy_report.check_json(checks)
    elif fmt == "junit":
        text = policy_report.check_junit(checks)
    else:
        text = policy_report.check_text(checks, style=click.style if output is None else lambda t, **_: t)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    if record:
        _record_static(ctx, entries, checks)

    totals = policy_report.totals(checks)
    if totals["blocking"]:
        raise CheckFailed(
            f"{totals['blocking']} blocking violation(s) in {totals['blocked_products']} product(s)"
        )
    if (totals["warnings"] or loaded.warnings) and not warnings_ok:
        found = [f"{totals['warnings']} warning(s)"] if totals["warnings"] else []
        if loaded.warnings:
            found.append(f"{len(loaded.warnings)} domain policy file(s) applying to no product")
        raise WarningsFound(f"{', '.join(found)}, no blocking violation")


def _record_static(ctx: Context, entries: list, checks: list) -> None:  # type: ignore[type-arg]
    from generator.catalog import store
    from generator.governance import compliance
    from generator.warehouse.connection import from_environment

    conn = from_environment(ctx.root).connect()
    try:
        store.migrate(conn)
        for entry, result in zip(entries, checks, strict=True):
            compliance.record(conn, entry.spec, "static", result.findings)
    finally:
        conn.close()
    click.echo(f"recorded {len(checks)} static compliance record(s) in the catalog", err=True)


@click.group("compliance")
def compliance_group() -> None:
    """Compliance records of the mesh, from the catalog."""


@compliance_group.command("report")
@click.option(
    "--html", "html", type=click.Path(dir_okay=False, path_type=Path), help="Also write an HTML report."
)
@output_format("text")
@pass_ctx
def report(ctx: Context, html: Path | None, fmt: str) -> None:
    """Every product's last gate verdict, policy counts, messages and quality scores."""
    from generator.governance import compliance, policy_report
    from generator.report.compliance_page import write_compliance_page
    from generator.warehouse.connection import from_environment

    conn = from_environment(ctx.root).connect()
    try:
        entries = compliance.latest(conn)
    finally:
        conn.close()
    if fmt == "json":
        echo_json({"products": entries})
    else:
        click.echo(policy_report.report_text(entries), nl=False)
    if html:
        write_compliance_page(entries, html)
        click.echo(f"wrote {html}")


@click.command("diff")
@click.option(
    "--against",
    "ref",
    required=True,
    help="The git ref the change is judged against: a branch (origin/main), tag or commit.",
)
@report_format
@report_output
@click.option(
    "--subscribers",
    "with_subscribers",
    is_flag=True,
    help="Also name the catalog's subscribers each change hits (needs the warehouse `datamesh db url` names).",
)
@pass_ctx
def diff(ctx: Context, ref: str, fmt: str, output: Path | None, with_subscribers: bool) -> None:
    """Judge the contract changes since a git ref with the gate's compatibility rules.

    Exit 0: no breaking change without a major bump; 1: at least one; 2: bad input (an unknown
    ref, a broken spec or policy file).
    """
    import json

    from generator.governance.diff import as_junit, as_text, catalog_subscribers, diff_against

    mesh = ctx.mesh()
    subscribers = None
    if with_subscribers:
        from generator.warehouse.connection import from_environment

        conn = from_environment(ctx.root).connect()
        try:
            subscribers = catalog_subscribers(conn)
        finally:
            conn.close()
    report = diff_against(ctx.root, mesh, ref, subscribers)
    if fmt == "json":
        text = json.dumps(report.as_dict(), indent=2) + "\n"
    elif fmt == "junit":
        text = as_junit(report)
    else:
        text = as_text(report)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    if report.blocking:
        raise CheckFailed(f"{report.blocking} breaking change(s) without a major version bump since {ref}")
