"""`datamesh console`: open the operations console (Airflow's api-server with the datamesh plugin)."""

from __future__ import annotations

import click

from generator.cli.context import Context, pass_ctx


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--login", is_flag=True, help="Require a login (users admin and viewer) instead of none.")
@pass_ctx
def console(ctx: Context, port: int, login: bool) -> None:
    """Serve the console (catalog pages and API inside Airflow) on the local Airflow home."""
    from generator.dev.console import run_console
    from generator.errors import CheckFailed
    from generator.warehouse.connection import from_environment

    code = run_console(ctx.root, from_environment(ctx.root), port, login, echo=click.echo)
    if code:
        raise CheckFailed(f"the api-server stopped with exit code {code}")
