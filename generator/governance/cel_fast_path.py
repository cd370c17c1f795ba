"""A fast path for the common shapes of policy expressions, evaluated directly on plain data.

Why: cel-python's interpreter visits every node of the parse tree through a generic visitor and
works on CEL values, so each subject's data must be converted first; even `column.pii != null`
costs a few tenths of a millisecond that way, and 1,000 products are ~130,000 policy subjects.

What: `compile_fast` turns the tree cel-python's own parser built (so CEL's syntax and literals
stay cel-python's) into nested Python closures over the plain JSON values of the variables, for
the shapes policies use: variables and field paths, literals, lists of them, `==` and `!=` (with
the null-aware equality of generator.governance.cel), `<`, `<=`, `>`, `>=`, `in`, `&&`, `||`, `!`,
`size()` and `.matches()`, and for messages `?:`, `+` of two strings and `string()` of a
string or a number. Nothing is generated or executed from policy text: each closure is one
of the few fixed functions below.

Exactness: a closure answers only when the answer is certainly cel-python's. Operands of an
operator must be of the same scalar type (cel-python 0.5 has no overload for `1 < 2.0`, and
`2.0 >= 1` works only one way round), a field must exist in a map, `&&`/`||`/`!` need booleans on
both sides (cel-python evaluates both; an error on either side has its own rules), `?:` a boolean
condition, and a policy's `when`/`assert` result must be a boolean. Anything else raises
`Unsupported` and the caller runs cel-python's interpreter, which then gives the result or the
error message. The plain data must be JSON data (dicts, lists,
str, int, float, bool, None), as `model_dump(mode="json")` and the gate's facts are.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import re2  # google-re2, cel-python's regex engine for `matches`
from celpy.celtypes import DoubleType, IntType
from celpy.evaluation import celstr
from lark import Token, Tree

Variables = Mapping[str, Any]
Fast = Callable[[Variables], Any]


class Unsupported(Exception):
    """This expression, or these values, are left to cel-python's interpreter."""


_SCALARS = (str, int, float, bool)  # exact types: bool is not an int here, as in CEL


def compile_fast(ast: Tree) -> Fast | None:
    """A function of the variables' plain values giving the expression's value, or None when the
    expression has a shape the fast path does not cover (macros, arithmetic, `?:`, functions...)."""
    try:
        return _compile(ast)
    except Unsupported:
        return None


def _compile(node: Tree) -> Fast:
    kind, children = node.data, node.children
    if kind == "expr" and len(children) == 3:  # condition ? if_true : if_false
        return _conditional(*(_compile(c) for c in children))
    if kind == "addition" and len(children) == 2 and children[0].data == "addition_add":
        # [addition_add(left operand), right operand]
        return _concatenation(_compile(children[0].children[0]), _compile(children[1]))
    if kind in ("expr", "addition", "multiplication", "member", "primary", "paren_expr"):
        if len(children) != 1 or not isinstance(children[0], Tree):
            raise Unsupported  # `?:`, `+`, `*`, ...
        return _compile(children[0])
    if kind in ("conditionalor", "conditionaland", "relation", "unary"):
        if len(children) == 1:
            return _compile(children[0])
        first, second = children
        if kind == "conditionalor":  # [left, right]
            return _logical(operator.or_, _compile(first), _compile(second))
        if kind == "conditionaland":
            return _logical(operator.and_, _compile(first), _compile(second))
        if kind == "unary":  # [unary_not | unary_neg, operand]
            if first.data != "unary_not":
                raise Unsupported  # minus of a non-literal
            return _not(_compile(second))
        # relation: [relation_<op>(left), right]
        return _relation(first.data, _compile(first.children[0]), _compile(second))
    if kind == "member_dot":
        return _field(_compile(children[0]), children[1].value)
    if kind == "member_dot_arg":
        target, method, *args = children
        arg_nodes = args[0].children if args else []
        if method.value != "matches" or len(arg_nodes) != 1:
            raise Unsupported
        return _matches(_compile(target), _compile(arg_nodes[0]))
    if kind == "ident_arg":
        name, *args = children
        arg_nodes = args[0].children if args else []
        if name.value not in _FUNCTIONS or len(arg_nodes) != 1:
            raise Unsupported  # other functions, and the has() and dyn() macros
        return _FUNCTIONS[name.value](_compile(arg_nodes[0]))
    if kind == "ident":
        return _variable(children[0].value)
    if kind == "literal":
        return _constant(_literal(children[0]))
    if kind == "list_lit":
        items = [_compile(c) for c in children[0].children] if children else []
        return _list(items)
    raise Unsupported


def _literal(token: Token) -> Any:
    """The plain value of a literal, converted the way cel-python's interpreter converts it."""
    kind = token.type
    if kind == "NULL_LIT":
        return None
    if kind == "BOOL_LIT":
        return token.value.lower() == "true"
    try:
        if kind == "INT_LIT":
            return int(IntType(token.value))
        if kind == "FLOAT_LIT":
            return float(DoubleType(token.value))
        if kind in ("STRING_LIT", "MLSTRING_LIT"):
            return str(celstr(token))
    except ValueError:
        raise Unsupported from None  # the interpreter reports it
    raise Unsupported  # bytes, unsigned ints


def _constant(value: Any) -> Fast:
    return lambda _: value


def _variable(name: str) -> Fast:
    def variable(variables: Variables) -> Any:
        try:
            return variables[name]
        except KeyError:
            raise Unsupported from None

    return variable


def _field(member: Fast, name: str) -> Fast:
    def field(variables: Variables) -> Any:
        value = member(variables)
        if type(value) is not dict:
            raise Unsupported  # null, a list, a string: an error in CEL
        try:
            return value[name]
        except KeyError:
            raise Unsupported from None

    return field


def _list(items: list[Fast]) -> Fast:
    return lambda variables: [item(variables) for item in items]


def _same_scalar_type(a: Any, b: Any) -> None:
    if type(a) is not type(b) or type(a) not in _SCALARS:
        raise Unsupported


_ORDER = {"relation_lt": operator.lt, "relation_le": operator.le, "relation_gt": operator.gt,
          "relation_ge": operator.ge}


def _relation(kind: str, left: Fast, right: Fast) -> Fast:
    if kind in ("relation_eq", "relation_ne"):
        want = kind == "relation_eq"

        def equality(variables: Variables) -> bool:
            a, b = left(variables), right(variables)
            if a is None or b is None:  # null-aware, as generator.governance.cel defines `==` and `!=`
                return (a is None and b is None) == want
            _same_scalar_type(a, b)
            return (a == b) == want

        return equality
    if kind == "relation_in":

        def contains(variables: Variables) -> bool:
            item, container = left(variables), right(variables)
            if type(container) is not list or type(item) not in _SCALARS:
                raise Unsupported
            if any(type(c) is not type(item) for c in container):
                raise Unsupported  # cel-python's `in` has its own rules for mixed lists
            return any(c == item for c in container)

        return contains
    compare = _ORDER[kind]

    def order(variables: Variables) -> bool:
        a, b = left(variables), right(variables)
        _same_scalar_type(a, b)
        return compare(a, b)

    return order


def _logical(combine: Callable[[bool, bool], bool], left: Fast, right: Fast) -> Fast:
    def logical(variables: Variables) -> bool:
        a, b = left(variables), right(variables)
        if type(a) is not bool or type(b) is not bool:
            raise Unsupported
        return combine(a, b)

    return logical


def _not(operand: Fast) -> Fast:
    def negation(variables: Variables) -> bool:
        value = operand(variables)
        if type(value) is not bool:
            raise Unsupported
        return not value

    return negation


def _matches(target: Fast, pattern: Fast) -> Fast:
    def matches(variables: Variables) -> bool:
        text, regex = target(variables), pattern(variables)
        if type(text) is not str or type(regex) is not str:
            raise Unsupported
        try:
            compiled = _regex(regex)
        except re2.error:
            raise Unsupported from None  # a bad pattern: the interpreter words the error
        return compiled.search(text) is not None

    return matches


@lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    # What cel-python's `matches` does (`re2.search(pattern, text)`), with the pattern compiled
    # once instead of on every call, which was most of the time of a per-column policy.
    return re2.compile(pattern)


def _size(operand: Fast) -> Fast:
    def size(variables: Variables) -> int:
        value = operand(variables)
        if type(value) not in (str, list, dict):
            raise Unsupported  # (cel-python says 0 for null; left to it)
        return len(value)

    return size


def _conditional(condition: Fast, if_true: Fast, if_false: Fast) -> Fast:
    def conditional(variables: Variables) -> Any:
        chosen = condition(variables)
        if type(chosen) is not bool:
            raise Unsupported  # an error in CEL
        # Only the chosen branch is evaluated, as in CEL: an error in the other one does not count.
        return if_true(variables) if chosen else if_false(variables)

    return conditional


def _concatenation(left: Fast, right: Fast) -> Fast:
    def concatenation(variables: Variables) -> str:
        a, b = left(variables), right(variables)
        if type(a) is not str or type(b) is not str:
            raise Unsupported  # numbers add, lists concatenate, mixed types are errors: left to it
        return a + b

    return concatenation


def _string(operand: Fast) -> Fast:
    def string(variables: Variables) -> str:
        value = operand(variables)
        if type(value) is str or type(value) is int:
            return str(value)
        if type(value) is float and math.isfinite(value):
            return str(value)  # cel-python's string(double) is Python's str of the float
        raise Unsupported  # null (an error), bool, infinities, lists: left to it

    return string


_FUNCTIONS: dict[str, Callable[[Fast], Fast]] = {"size": _size, "string": _string}
