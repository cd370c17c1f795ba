"""Reading a document while remembering what was read, so that what the reader never used can be
listed: an import says what it leaves behind instead of dropping it silently."""

from __future__ import annotations

from typing import Any

Loc = tuple[str | int, ...]
_MISSING = object()


class TrackedDocument:
    def __init__(self, document: Any) -> None:
        self.document = document
        self._used: set[Loc] = set()  # consumed whole, with everything below
        self._touched: set[Loc] = {()}  # on the way to something consumed

    def at(self, loc: Loc, default: Any = None) -> Any:
        """The value at `loc` (or `default`), without consuming it."""
        node = self.document
        for step in loc:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    return default
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    return default
                node = node[step]
        return node

    def take(self, loc: Loc, default: Any = None) -> Any:
        """The value at `loc`, consumed with everything below it."""
        value = self.at(loc, _MISSING)
        if value is _MISSING:
            return default
        self._used.add(loc)
        for end in range(len(loc)):
            self._touched.add(loc[:end])
        return value

    def items(self, loc: Loc) -> list[tuple[Loc, Any]]:
        """The entries of the list at `loc`, each with its location (nothing consumed)."""
        value = self.at(loc)
        return [((*loc, i), item) for i, item in enumerate(value)] if isinstance(value, list) else []

    def leftovers(self) -> list[Loc]:
        """The highest locations of which nothing was consumed, in document order."""
        found: list[Loc] = []

        def walk(node: Any, loc: Loc) -> None:
            if loc in self._used:
                return
            if loc not in self._touched:
                found.append(loc)
                return
            children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, child in children:
                walk(child, (*loc, key))

        walk(self.document, ())
        return found
