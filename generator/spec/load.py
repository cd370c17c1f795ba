"""Load a spec file: YAML -> validated DataProduct, or a SpecError listing every problem at once.

Each problem names the file, the line, and the field path with list indexes replaced by the item's
name (`outputs.orders.columns.status.type`, not `outputs[0].columns[4].type`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from generator.errors import Problem, SpecError
from generator.spec.model import DataProduct

Loc = tuple[str | int, ...]


def load_spec(path: Path, display: str | None = None) -> DataProduct:
    """Parse and validate one spec file. `display` is the name shown in errors (repo-relative)."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([Problem(shown, "", f"cannot read the file: {exc.strerror}")]) from exc
    return parse_spec(text, shown)


# libyaml's parser when PyYAML was built with it (the wheels are): same documents, ~10x faster.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_spec(text: str, shown: str) -> DataProduct:
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(shown, "", f"not valid YAML: {problem}", line)]) from exc
    if not isinstance(data, dict):
        raise SpecError([Problem(shown, "", "the spec must be a YAML mapping of fields", 1)])
    try:
        return DataProduct.model_validate(data)
    except ValidationError as exc:
        # Lines are only needed to report problems: the file is composed again, only then.
        lines = _line_index(yaml.compose(text, Loader=_Loader))
        problems = [_problem(shown, err, data, lines) for err in exc.errors()]
        raise SpecError(problems) from exc


def _problem(shown: str, err: Any, data: Any, lines: dict[Loc, int]) -> Problem:
    loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field (check its spelling; see `datamesh schema` for the fields allowed)"
    elif err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "enum" and "expected" in err.get("ctx", {}):
        message = f"{err['input']!r} is not allowed; expected {err['ctx']['expected']}"
    return Problem(shown, _readable_path(loc, data), message, _nearest_line(loc, lines))


def _readable_path(loc: Loc, data: Any) -> str:
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


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    # A missing field has no line of its own: point at the nearest enclosing node that exists.
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _line_index(root: yaml.Node | None) -> dict[Loc, int]:
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
