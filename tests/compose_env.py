"""Compose's `.env` files and `${VAR}` interpolation, as docker compose reads them: for the compose
file's static checks (tests/test_compose.py) and the stack test's harness (tests/stack/compose.py)."""

from __future__ import annotations

import re
from pathlib import Path

# $$ is a literal $, ${NAME}, ${NAME:-default}, ${NAME-default} and $NAME are variables.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env-style file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def variables(text: str, *, required_only: bool = False) -> set[str]:
    """The variables `text` uses; with `required_only`, those without a default (`${NAME:-x}`)."""
    return {
        m.group(1) or m.group(4)
        for m in _VARIABLE.finditer(text)
        if m.group(0) != "$$" and not (required_only and m.group(2) in (":-", "-"))
    }


def interpolate(text: str, values: dict[str, str]) -> str:
    """What compose makes of `text` with `values` as its .env."""

    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, operator, default = m.group(1) or m.group(4), m.group(2), m.group(3)
        if (operator == ":-" and not values.get(name)) or (operator == "-" and name not in values):
            return default
        return values[name]

    return _VARIABLE.sub(value, text)
