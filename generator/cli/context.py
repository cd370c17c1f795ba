"""What every `datamesh` command receives: the repo root and the debug flag.

Its own module so that command modules (cli_catalog, cli_policy, ...) can import it without
importing cli.py, which imports them.
"""

from __future__ import annotations

from pathlib import Path

import click

from generator.errors import UserError
from generator.layout import DBT_DIR
from generator.spec.mesh import Mesh, load_mesh


class Context:
    def __init__(self, root: Path, debug: bool):
        self.root = root.resolve()
        self.debug = debug

    def mesh(self) -> Mesh:
        if not (self.root / DBT_DIR).is_dir():
            raise UserError(
                f"{self.root} has no dbt/ folder: run datamesh from the repo root, or pass --root "
                "(or set DATAMESH_ROOT)"
            )
        return load_mesh(self.root)


pass_ctx = click.make_pass_decorator(Context)
