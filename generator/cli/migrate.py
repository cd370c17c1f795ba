"""placeholder"""
import click


@click.command("migrate")
def migrate() -> None:
    """placeholder"""
