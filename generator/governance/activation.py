"""The variables of one policy subject, as plain data and (only when a program runs) as CEL values."""

from __future__ import annotations

import json
from typing import Any

import celpy

# Entries a memo of expression results keeps before it starts again (one memo per expression).
MEMO_LIMIT = 20_000

MISSING = object()


def lookup(variables: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or MISSING when a step is not a map holding the next name."""
    value: Any = variables
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


class Activation:
    """The variables of one subject: plain data (for messages and memo keys), converted to CEL
    values only when a program actually runs."""

    __slots__ = ("_cel", "_convert", "plain")

    def __init__(self, plain: dict[str, Any], convert: Converter) -> None:
        self.plain = plain
        self._convert = convert
        self._cel: dict[str, Any] | None = None

    def cel(self, names: frozenset[str] | None = None) -> dict[str, Any]:
        """The CEL values of `names` (default: all variables); converting the whole product for
        an expression that reads only `column` would cost more than evaluating it."""
        if self._cel is None:
            self._cel = {}
        for name in self.plain if names is None else names:
            if name not in self._cel:
                self._cel[name] = self._convert(self.plain[name])
        return self._cel

    def key(self, reads: tuple[tuple[str, ...], ...]) -> str | None:
        values = [lookup(self.plain, ".".join(chain)) for chain in reads]
        if any(v is MISSING for v in values):
            return None  # a path through a list or null: let the program say what it means
        return json.dumps(values, sort_keys=True)  # JSON keeps true, 1 and 1.0 apart


def pruned(plain: dict[str, Any], reads: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """Only the values at `reads` and the maps leading to them, e.g. {"column": {"pii": None}}.
    Used only when every path resolved (see `Activation.key`)."""
    result: dict[str, Any] = {}
    for chain in sorted(reads, key=len):  # shorter first: a value taken whole covers paths below it
        source, target = plain, result
        for part in chain[:-1]:
            source = source[part]
            if target.get(part) is source:
                break  # taken whole already (never write into it: it is the spec's own data)
            target = target.setdefault(part, {})
        else:
            target[chain[-1]] = source[chain[-1]]
    return result


class Converter:
    """json_to_cel with a cache by object, so the product is converted once for all its subjects."""

    def __init__(self) -> None:
        self._done: dict[int, tuple[Any, Any]] = {}

    def __call__(self, value: Any) -> Any:
        hit = self._done.get(id(value))
        if hit is None:
            # Keep the original alive with its conversion, so its id cannot be reused meanwhile.
            hit = self._done[id(value)] = (value, celpy.json_to_cel(value))
        return hit[1]
