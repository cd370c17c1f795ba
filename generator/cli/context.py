"""What every `datamesh` command receives: the repo root and the debug flag.

Its own module so that command modules (cli_catalog, cli_policy, ...) can import it without
importing cli.py, which imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from generator.errors import UserError
from generator.layout import DBT_DIR

if TYPE_CHECKING:
    from generator.spec.mesh import Mesh


class Context:
    def __init__(self, root: Path, debug: bool):
        self.root = root.resolve()
        self.debug = debug

    def mesh(self) -> Mesh:
        # Imported here: the spec model (pydantic) is the heaviest import, and an incremental
        # `check` on an unchanged mesh never needs it.
        from generator.spec.mesh import load_mesh

        self.require_repo()
        return load_mesh(self.root)

    def require_repo(self) -> None:
        if not (self.root / DBT_DIR).is_dir():
            raise UserError(
                f"{self.root} has no dbt/ folder: run datamesh from the repo root, or pass --root "
                "(or set DATAMESH_ROOT)"
            )


pass_ctx = click.make_pass_decorator(Context)
