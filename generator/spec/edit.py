"""Small, reviewable edits of a spec's text: a reader added to its access list, the rest of the file
(comments, order, quoting) left exactly as it was. The result is validated again before use.
"""

from __future__ import annotations

import difflib

import yaml

from generator.errors import Problem, SpecError
from generator.spec.load import parse_spec
from generator.spec.model import DataProduct
from generator.spec.problems import YAML_LOADER


def add_reader(text: str, shown: str, field: str, name: str) -> str:
    """The spec text with `name` added to `access.<field>` (roles or domains). Unchanged when it
    is there already. SpecError when the result would not be a valid spec."""
    root = yaml.compose(text, Loader=YAML_LOADER)
    if not isinstance(root, yaml.MappingNode):
        raise SpecError([Problem(shown, "", "the spec must be a YAML mapping of fields", 1)])
    access = _value(root, "access")
    if access is None:
        tail = "" if text.endswith("\n") or not text else "\n"
        edited = f"{text}{tail}access:\n  {field}: [{name}]\n"
    elif not isinstance(access, yaml.MappingNode) or not access.value:
        raise SpecError([Problem(shown, "access", "cannot add a reader: `access` is not a mapping of lists",
                                 access.start_mark.line + 1)])
    else:
        listed = _value(access, field)
        if listed is None:
            indent = access.value[0][0].start_mark.column
            at = _line_start(text, access.value[0][0].start_mark.index)
            edited = text[:at] + " " * indent + f"{field}: [{name}]\n" + text[at:]
        elif not isinstance(listed, yaml.SequenceNode):
            raise SpecError([Problem(shown, f"access.{field}", "cannot add a reader: it is not a list",
                                     listed.start_mark.line + 1)])
        elif name in [item.value for item in listed.value]:
            return text
        elif listed.flow_style or not listed.value:
            items = [text[i.start_mark.index:i.end_mark.index] for i in listed.value] + [name]
            start, end = listed.start_mark.index, listed.end_mark.index
            edited = text[:start] + "[" + ", ".join(items) + "]" + text[end:]
        else:
            last = listed.value[-1]
            indent = last.start_mark.column - 2
            at = _line_end(text, last.end_mark.index)
            edited = text[:at] + "\n" + " " * indent + f"- {name}" + text[at:]
    spec = parse_spec(edited, shown)
    if name not in getattr(spec.access, field):
        raise SpecError([Problem(shown, f"access.{field}", f"could not add {name!r} to the list")])
    return edited


def unified_diff(before: str, after: str, shown: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{shown}", f"b/{shown}"
        )
    )


def reads(spec: DataProduct, field: str, name: str) -> bool:
    return name in getattr(spec.access, field)


def _value(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((v for k, v in mapping.value if k.value == key), None)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    # end_mark of a block item may sit at the start of the next line: step back onto the item's own.
    if index > 0 and text[index - 1] == "\n":
        index -= 1
    end = text.find("\n", index)
    return len(text) if end < 0 else end
