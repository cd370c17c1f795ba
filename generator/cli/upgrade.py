"""`datamesh upgrade [--plan] [--force]` (and `datamesh render --plan`): what a new generator, or
changed specs, would change in the generated files, product by product with a reason, and writing it.

A generated file edited by hand is shown with its edit (as a diff against what the render produces
now) and `upgrade` refuses to overwrite it unless --force. User-owned files are never changed.
"""

from __future__ import annotations

import click

from generator.cli.context import Context, pass_ctx
from generator.errors import CheckFailed


def show_plan(ctx: Context, show_diff: bool = False):  # -> UpgradePlan
    from generator.render.plan import upgrade_plan

    ctx.require_repo()
    plan = upgrade_plan(ctx.root)
    for product in plan.products:
        click.echo(f"{product.product}: {product.reason}")
        for change in product.changes:
            kind = f"{change.kind:12}"  # padded before styling: escape codes have no width
            flag = click.style(kind, fg="red") if change.kind == "hand edit" else kind
            click.echo(f"    {flag} {change.path}")
            if change.kind == "hand edit" or (show_diff and change.diff):
                if change.kind == "hand edit":
                    click.echo("        (-: the file as edited, +: what the render writes)")
                click.echo("".join(f"        {line}" for line in change.diff.splitlines(keepends=True)))
    files = len(plan.paths())
    click.echo(
        f"plan: {files} file(s) of {len([p for p in plan.products if p.product != '(mesh)'])} product(s) "
        f"would change; {plan.unchanged} product(s) current; {len(plan.hand_edits)} hand edit(s)"
    )
    return plan


@click.command("upgrade")
@click.option("--plan", "plan_only", is_flag=True, help="Write nothing: print what would change and why.")
@click.option("--diff", "show_diff", is_flag=True, help="Show each change as a diff.")
@click.option("--force", is_flag=True, help="Overwrite generated files edited by hand too.")
@pass_ctx
def upgrade(ctx: Context, plan_only: bool, show_diff: bool, force: bool) -> None:
    """Re-render every product whose generated files are stale (a new generator, a changed spec),
    after showing the plan. Refuses while a generated file holds a hand edit, unless --force."""
    plan = show_plan(ctx, show_diff)
    if plan_only:
        return
    if plan.hand_edits and not force:
        edited = ", ".join(c.path for c in plan.hand_edits)
        raise CheckFailed(
            f"{len(plan.hand_edits)} generated file(s) were edited by hand ({edited}); nothing was written. "
            "Move the change into the spec (or the model), or pass --force to overwrite it."
        )
    write_plan(ctx, plan)


def write_plan(ctx: Context, plan) -> list[str]:
    from generator.render.mesh import remember_schema
    from generator.render.write import apply

    report = apply(ctx.root, plan.rendered, plan.scope)
    remember_schema(ctx.root, plan.rendered)
    done = sorted(report.written + report.created + report.removed)
    click.echo(f"upgraded: {len(done)} file(s) written, created or removed")
    return done
