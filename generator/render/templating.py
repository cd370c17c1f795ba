"""The one place a Jinja environment is built, in one of two modes.

- "code": Python, SQL and YAML (the DAG, dbt files). Autoescape is off on purpose: it escapes for
  HTML, and each renderer escapes for its own language (Python literals through `pyrepr`, YAML
  through `yaml.safe_dump`, identifiers validated by the spec). Whitespace is trimmed around
  block tags so generated code reads as if written by hand.
- "html": the mesh report, the compliance page and their SVG. Autoescape on: every name,
  description and message is data and lands in HTML or SVG (XML), so `<`, `&` and quotes come out
  as entities.

In both modes an undefined variable is an error. Templates are read from the `templates/` folder
of the package that asks (e.g. "generator.render", "generator.report"), then of any further
packages it names (the console's pages extend the report's layout and macros).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

import jinja2

Mode = Literal["code", "html"]


def pyrepr(value: Any) -> str:
    """A Python literal for `value` (strings, numbers, bools, None, lists, dicts of those)."""
    return repr(value)


@cache
def environment(mode: Mode = "code", package: str = "generator.render", *more: str) -> jinja2.Environment:
    if mode not in ("code", "html"):
        raise ValueError(f"templating mode {mode!r}: allowed are 'code' and 'html'")
    html = mode == "html"
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader(p, "templates") for p in (package, *more)]),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=not html,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    if not html:
        env.filters["pyrepr"] = pyrepr
    return env


def render(template: str, **context: Any) -> str:
    """Render one of generator/render/templates/ in code mode (the DAG and dbt renderers)."""
    return environment("code", "generator.render").get_template(template).render(**context)
