"""Static analysis of a CEL parse tree: the names an expression refers to (to refuse unknown ones
when a policy file is loaded) and the variable paths it reads (to memoise its results)."""

from __future__ import annotations

from typing import Any

from lark import Token, Tree

# CEL macros that bind their first argument as a loop variable (e.g. `outputs.all(o, ...)`).
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
# CEL's type names, which are identifiers too: `type(x) == int`.
_CEL_TYPES = {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string",
              "timestamp", "type", "uint"}

Reads = tuple[tuple[str, ...], ...]


def unknown_references(ast: Tree, variables: tuple[str, ...], example: dict[str, Any]) -> str | None:
    """Name the first unknown variable or field, walking the CEL syntax tree.

    Field chains on the known variables (`product.owner.emial`) are checked against the example's
    keys, also in branches a single evaluation would skip; chains through lists stop at the list.
    """
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) >= 3:
            method, args = node.children[1], node.children[2]
            if isinstance(method, Token) and method.value in _MACROS and isinstance(args, Tree):
                first = args.children[0] if args.children else None
                name = _bare_ident(first) if isinstance(first, Tree) else None
                if name:
                    bound.add(name)
    for node in ast.iter_subtrees():
        if node.data == "ident":
            name = node.children[0].value
            if name not in variables and name not in bound and name not in _CEL_TYPES:
                return f"unknown variable {name!r}; this policy can use {', '.join(variables)}"
        if node.data == "member_dot":
            chain = _dotted_chain(node)
            if chain and chain[0] in variables:
                value: Any = example
                for i, part in enumerate(chain):
                    if not isinstance(value, dict):
                        break
                    if part not in value:
                        owner = ".".join(chain[:i])
                        known = ", ".join(sorted(value))
                        return f"unknown field {part!r} of {owner}; it has: {known}"
                    value = value[part]
    return None


def reads(ast: Tree, variables: tuple[str, ...]) -> Reads | None:
    """The variable paths an expression reads (`column.pii`, `product.classification`), for
    memoising; a variable used other than through a field path is read whole."""
    chains: set[tuple[str, ...]] = set()
    direct: dict[str, int] = {}  # per variable, the field paths that start at one of its uses
    uses: dict[str, int] = {}
    for node in ast.iter_subtrees():
        if node.data == "ident":
            name = node.children[0].value
            uses[name] = uses.get(name, 0) + 1
        elif node.data == "member_dot_arg" and node.children[1].value in _MACROS:
            args = node.children[2]
            first = args.children[0] if isinstance(args, Tree) and args.children else None
            if isinstance(first, Tree) and _bare_ident(first) in variables:
                return None  # a loop variable shadows a variable: keep it simple, no memo
        if node.data == "member_dot":
            chain = _dotted_chain(node)
            if chain and chain[0] in variables:
                chains.add(tuple(chain))
                if len(chain) == 2:  # the innermost field access of one use of the variable
                    direct[chain[0]] = direct.get(chain[0], 0) + 1
    for name in variables:
        if uses.get(name, 0) > direct.get(name, 0):
            chains.add((name,))
    return tuple(sorted(chains))


def _bare_ident(node: Tree) -> str | None:
    """The name if `node` (an expr) is nothing but one identifier, as a macro's loop variable is."""
    idents = [t for t in node.iter_subtrees() if t.data == "ident"]
    if len(idents) == 1 and not any(t.data in ("member_dot", "member_index") for t in node.iter_subtrees()):
        return idents[0].children[0].value
    return None


def _dotted_chain(node: Tree) -> list[str] | None:
    """`member_dot(member_dot(ident a, b), c)` -> ["a", "b", "c"]; None when not a plain chain."""
    parts: list[str] = []
    current: Any = node
    while True:
        if current.data == "member_dot":
            parts.append(current.children[1].value)
            current = current.children[0]
        elif current.data in ("member", "primary") and len(current.children) == 1:
            current = current.children[0]
            if isinstance(current, Token):
                return None
        elif current.data == "ident":
            parts.append(current.children[0].value)
            return list(reversed(parts))
        else:
            return None
