"""The one Jinja environment every renderer uses, configured in this one place.

Autoescape is off on purpose: it escapes for HTML. Our outputs are Python, SQL and YAML, and each
renderer escapes for its own language (Python literals through `pyrepr`, YAML through
`yaml.safe_dump`, identifiers validated by the spec). An undefined variable is an error.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


def pyrepr(value: Any) -> str:
    """A Python literal for `value` (strings, numbers, bools, None, lists, dicts of those)."""
    return repr(value)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("generator.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = pyrepr
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
