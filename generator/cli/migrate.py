"""`datamesh migrate [PRODUCT] [--check]`: rewrite specs of an older spec_version to the current one.

Works on spec files directly (an old spec does not load as the current model, so the mesh cannot be
loaded first). Every spec is migrated and validated before any is written; one refusal writes none.
"""

from __future__ import annotations

from pathlib import Path

import click

from generator.cli.context import Context, pass_ctx
from generator.errors import CheckFailed, SpecError, UserError
from generator.layout import DBT_DIR, SPEC_FILENAME


def validate_current(text: str, shown: str) -> None:
    """Raise SpecError when `text` is not a valid spec of the current version."""
    from generator.spec.load import parse_spec

    parse_spec(text, shown)


def target_version() -> int:
    from generator.spec.model import SPEC_VERSION

    return SPEC_VERSION


def spec_files(root: Path, product: str | None) -> list[Path]:
    """Every spec file, or the one PRODUCT names (`domain/product`, `domain__product`, `product`)."""
    from generator.render.incremental import product_names

    names = product_names(root)
    if product:
        wanted = product.rstrip("/").removesuffix(f"/{SPEC_FILENAME}").removeprefix(f"{DBT_DIR}/")
        wanted = wanted.replace("__", "/")
        names = [n for n in names if wanted in (n, n.split("/")[1])]
        if not names:
            where = f"{DBT_DIR}/<domain>/<product>/{SPEC_FILENAME}"
            raise UserError(f"{product}: no such product (its spec would be {where})")
    return [root / DBT_DIR / name / SPEC_FILENAME for name in names]


@click.command("migrate")
@click.argument("product", required=False)
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 if a spec needs migrating.")
@pass_ctx
def migrate(ctx: Context, product: str | None, check_only: bool) -> None:
    """Rewrite specs (all, or one PRODUCT) of an older spec_version to the current one, keeping
    comments, key order and formatting. A spec that cannot be migrated is named with its field,
    and nothing is written."""
    from generator.spec import migrate as migrations

    ctx.require_repo()
    target = target_version()
    pending: list[tuple[Path, migrations.Migrated]] = []
    problems: list[str] = []
    files = spec_files(ctx.root, product)
    for path in files:
        shown = path.relative_to(ctx.root).as_posix()
        try:
            result = migrations.migrate_text(path.read_text(encoding="utf-8"), shown, target)
            if result.changed:
                validate_current(result.text, shown)
                pending.append((path, result))
        except SpecError as exc:
            problems += [f"after migrating: {p}" for p in exc.problems]
        except UserError as exc:
            problems.append(str(exc))
    if problems:
        raise UserError(f"{len(problems)} spec(s) cannot be migrated; nothing was written:\n  " + "\n  ".join(problems))
    for path, result in pending:
        shown = path.relative_to(ctx.root).as_posix()
        click.echo(f"{'would migrate' if check_only else 'migrated'} {shown}: v{result.source} -> v{result.target}")
        for step in result.steps:
            click.echo(f"    {step}")
    if check_only:
        if pending:
            raise CheckFailed(f"{len(pending)} spec(s) are older than spec_version {target}: run `datamesh migrate`")
    else:
        for path, result in pending:
            path.write_text(result.text, encoding="utf-8")
    click.echo(f"{len(files) - len(pending)} of {len(files)} spec(s) already at spec_version {target}")
