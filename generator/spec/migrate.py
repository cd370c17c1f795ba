"""Spec migrations: rewrite a spec of an older `spec_version` into the current one, keeping the
user's comments, key order, quoting and indentation (ruamel.yaml's round-trip mode).

A migration is a function on the round-trip document of one version that turns it into the next;
`MIGRATIONS` maps the version a migration starts from to it. A spec is taken from its version to
SPEC_VERSION one step at a time. Each step is held to two rules:

- no field is lost: every value of the old document is still in the new one, at its path or at the
  path the migration says it `moves` it to; a step that would drop one is refused, naming the field;
- the result is valid: the current model accepts it (else nothing is written).

The shipped model is version 1, so MIGRATIONS is empty; the machinery is tested with a test-only
v1 -> v2 (tests/test_migrate.py) on every committed example. The first incompatible change to the
spec adds its step here and raises SPEC_VERSION in model.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from generator.errors import UserError
from generator.spec.model import SPEC_VERSION

Document = Any  # a ruamel.yaml CommentedMap


@dataclass(frozen=True)
class Migration:
    """One step: `apply` turns a document of version `source` into version `source + 1` in place."""

    source: int
    apply: Callable[[Document], None]
    summary: str  # one line: what changes, for `datamesh migrate` to print
    moves: Mapping[str, str] = field(default_factory=dict)  # dotted path -> its new dotted path


# Version N -> the step from N to N + 1.
MIGRATIONS: dict[int, Migration] = {}


class MigrationError(UserError):
    """A spec cannot be migrated; the message names the file and the field."""


@dataclass(frozen=True)
class Migrated:
    source: int  # the version the spec was
    target: int
    text: str  # the spec at `target`, formatted as the user wrote it
    steps: tuple[str, ...]  # the summaries of the steps applied

    @property
    def changed(self) -> bool:
        return self.source != self.target


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, indent, offset = load_yaml_guess_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's lines
    yaml.indent(mapping=2, sequence=indent or 2, offset=offset or 0)
    return yaml


def version_of(data: Any, shown: str) -> int:
    """The spec_version of a loaded spec, or MigrationError naming the field."""
    value = data.get("spec_version") if isinstance(data, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MigrationError(f"{shown}: spec_version: {value!r} is not a spec version (a whole number from 1)")
    return value


def future_version_message(shown: str, version: int) -> str:
    return (
        f"{shown}: spec_version: {version} is newer than this generator reads (up to {SPEC_VERSION}): "
        "upgrade datamesh (the generator) to read it; nothing was changed"
    )


def migrate_text(
    text: str,
    shown: str,
    target: int = SPEC_VERSION,
    migrations: Mapping[int, Migration] | None = None,
) -> Migrated:
    """The spec `text` rewritten to version `target`. Raises MigrationError (nothing written) for a
    future version, a missing step or a step that would lose a field."""
    steps_of = MIGRATIONS if migrations is None else migrations
    yaml = _yaml(text)
    document = yaml.load(text)
    source = version_of(document, shown)
    if source > target:
        raise MigrationError(future_version_message(shown, source))
    if source == target:
        return Migrated(source, target, text, ())
    applied: list[str] = []
    for version in range(source, target):
        step = steps_of.get(version)
        if step is None:
            raise MigrationError(f"{shown}: spec_version: no migration from version {version} to {version + 1}")
        before = dict(_leaves(document))
        step.apply(document)
        document["spec_version"] = version + 1
        after = dict(_leaves(document))
        lost = [
            path
            for path, value in before.items()
            if path != "spec_version" and after.get(_moved(path, step.moves), _MISSING) != value
        ]
        if lost:
            raise MigrationError(
                f"{shown}: the migration to spec_version {version + 1} would lose "
                + ", ".join(lost)
                + "; nothing was changed (report this: a migration must keep or move every field)"
            )
        applied.append(f"v{version} -> v{version + 1}: {step.summary}")
    out = io.StringIO()
    yaml.dump(document, out)
    return Migrated(source, target, out.getvalue(), tuple(applied))


_MISSING = object()


def _moved(path: str, moves: Mapping[str, str]) -> str:
    for old, new in moves.items():
        if path == old or path.startswith(old + "."):
            return new + path[len(old) :]
    return path


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar; list items are named by their `name` where they have one."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            label = item.get("name") if isinstance(item, Mapping) and "name" in item else index
            yield from _leaves(item, f"{prefix}.{label}")
    else:
        yield prefix, node
