"""YAML text and pydantic's ValidationError turned into `Problem`s a user can act on: the file, the
line, a readable field path and what is allowed. Shared by the spec loader and the policy loader.

A field path names list items by their `name` (`outputs.orders.columns.status.type`, not
`outputs[0].columns[4].type`); a problem without a line of its own (a missing field) points at the
nearest enclosing node that has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from generator.errors import Problem, SpecError
from generator.spec import yaml_data
from generator.spec.yaml_data import YAML_LOADER

Loc = tuple[str | int, ...]


def load_yaml(text: str) -> Any:
    """The document's data, as yaml.safe_load gives it (raises yaml.YAMLError)."""
    return yaml_data.load_yaml(text)


def parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its data, from one parse (raises yaml.YAMLError)."""
    loader = yaml_data.CachingLoader(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else yaml_data.construct(loader, node)
    finally:
        loader.dispose()


def yaml_problem(shown: str, exc: yaml.YAMLError) -> Problem:
    """`not valid YAML: <what>` at the line where the parser stopped."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return Problem(shown, "", f"not valid YAML: {problem}", mark.line + 1 if mark else None)


def read_file(path: Path, shown: str) -> str:
    """The file's text; SpecError when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(shown, "", f"cannot read the file: {exc.strerror}")]) from exc


def load_mapping(text: str, shown: str, what: str) -> dict[str, Any]:
    """The document's fields; SpecError when it is not valid YAML or not a mapping (`what`: "the
    spec", "a domain file", for the message)."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SpecError([yaml_problem(shown, exc)]) from exc
    if not isinstance(data, dict):
        raise SpecError([Problem(shown, "", f"{what} must be a YAML mapping of fields", 1)])
    return data


def invalid(shown: str, text: str, data: Any, exc: ValidationError, wording: Mapping[str, str]) -> SpecError:
    """A model's ValidationError as one SpecError: every problem with its line and field path."""
    return located(shown, text, data, [(error_loc(err), error_message(err, wording)) for err in exc.errors()])


def located(shown: str, text: str, data: Any, found: list[tuple[Loc, str]]) -> SpecError:
    """Problems given by field location, with their lines. The lines are only needed to report
    problems: the text is composed again, only then."""
    lines = line_index(yaml.compose(text, Loader=YAML_LOADER))
    return SpecError(
        [Problem(shown, readable_path(loc, data), message, nearest_line(loc, lines)) for loc, message in found]
    )


def error_loc(err: Mapping[str, Any]) -> Loc:
    """A pydantic error's location without the validator steps pydantic inserts (`function-after[...]`)."""
    return tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))


def error_message(err: Mapping[str, Any], wording: Mapping[str, str]) -> str:
    """A pydantic error in words: `wording` by error type (e.g. "missing", "extra_forbidden"), else
    the allowed values of an enum, else pydantic's message."""
    if err["type"] in wording:
        return wording[err["type"]]
    if err["type"] == "enum" and "expected" in err.get("ctx", {}):
        return f"{err['input']!r} is not allowed; expected {err['ctx']['expected']}"
    return str(err["msg"]).removeprefix("Value error, ")


def readable_path(loc: Loc, data: Any) -> str:
    """`outputs.orders.columns.status.type` for ("outputs", 0, "columns", 4, "type")."""
    parts: list[str] = []
    node = data
    for step in loc:
        child = None
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            child = node[step]
            name = child.get("name") if isinstance(child, dict) else None
            parts.append(str(name) if isinstance(name, str) and name else f"[{step}]")
        else:
            parts.append(str(step))
            if isinstance(node, dict):
                child = node.get(step)
        node = child
    return ".".join(parts).replace(".[", "[")


def nearest_line(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    # A missing field has no line of its own: point at the nearest enclosing node that exists.
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def line_index(root: yaml.Node | None) -> dict[Loc, int]:
    """Map each field path to the 1-based line where its value (or key) starts."""
    index: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        index.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*loc, key.value)
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, (*loc, i))

    if root is not None:
        walk(root, ())
    return index
