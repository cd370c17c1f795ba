"""The YAML text of generated files: exactly what `yaml.safe_dump(data, **OPTIONS)` writes.

Rendering a thousand products writes 6,000 YAML files. PyYAML spends most of that time on its
machinery, not on the text: a node per value, an event per node, the resolver asked twice about
every scalar, and its emitter's state machine; libyaml's emitter still calls back into Python twice
per scalar. The renderers' data is plain (dicts, lists, strings, numbers, booleans, None) and is
written in block style, where the layout is simple: two spaces per level, a list inside a mapping
not indented, `{}` and `[]` for empty ones. This module writes that layout itself and leaves every
scalar to PyYAML's own emitter code: whether it is plain or quoted (choose_scalar_style), whether a
key may be written simply (check_simple_key) and how it folds at the width (write_plain and the
quoted writers), each asked once per distinct scalar and place, then remembered.

Anything else goes to PyYAML as it is: other types, a dict or list appearing twice (PyYAML writes
an anchor and an alias), a key it writes as `? key` (empty, multi-line or long), an empty or
non-mapping document. tests/test_render_dbt.py compares the two on thousands of generated texts.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import yaml
from yaml.events import ScalarEvent
from yaml.nodes import ScalarNode

OPTIONS: dict[str, Any] = {"sort_keys": False, "allow_unicode": True, "width": 100, "default_flow_style": False}
INDENT = 2  # PyYAML's default, as OPTIONS leave it

_TAG = "tag:yaml.org,2002:"
STR, INT, BOOL, NULL, FLOAT = (_TAG + name for name in ("str", "int", "bool", "null", "float"))
_REPRESENTER = yaml.representer.SafeRepresenter()  # only its represent_float: PyYAML's spelling
_RESOLVER = yaml.resolver.Resolver()  # SafeDumper's: which texts read back as something else

_MAX_CACHED = 200_000  # a bound for long-lived processes
_values: dict[tuple[str, str, int, int], str] = {}  # (text, tag, column, indent) -> as written there
_keys: dict[tuple[str, str], str] = {}  # (text, tag) -> as written as a simple key
_analyses: dict[str, Any] = {}  # text -> the emitter's ScalarAnalysis of it (the same in every place)
_local = threading.local()  # a scalar writer per thread: it keeps state while writing


def dump_yaml(data: Any) -> str:
    """`yaml.safe_dump(data, **OPTIONS)`, byte for byte."""
    text = _laid_out(data)
    return text if text is not None else yaml.dump(data, Dumper=yaml.SafeDumper, **OPTIONS)


def written_here(data: Any) -> bool:
    """Whether dump_yaml writes `data` itself, rather than handing it to PyYAML."""
    return _laid_out(data) is not None


def _laid_out(data: Any) -> str | None:
    """The text of `data` as this module writes it; None where PyYAML must write it."""
    if type(data) is not dict or not data:
        return None
    lines: list[str] = []
    try:
        _mapping(data, 0, "", lines, set())
    except _NotPlain:
        return None
    return "".join(lines)


class _NotPlain(Exception):
    """Data PyYAML must write itself."""


def _mapping(data: dict[Any, Any], indent: int, first: str, lines: list[str], seen: set[int]) -> None:
    """A block mapping with its keys at column `indent`; `first` is what starts the first key's line
    when a list item's dash does ("" otherwise)."""
    _once(data, seen)
    pad = " " * indent
    lead = first or pad
    for key, value in data.items():
        written_key = _key(key)
        kind = type(value)
        if kind is dict:
            if value:
                lines.append(f"{lead}{written_key}:\n")
                _mapping(value, indent + INDENT, "", lines, seen)
            else:
                lines.append(f"{lead}{written_key}: {{}}\n")
        elif kind is list:
            if value:  # a list in a mapping is not indented
                lines.append(f"{lead}{written_key}:\n")
                _sequence(value, indent, "", lines, seen)
            else:
                lines.append(f"{lead}{written_key}: []\n")
        else:
            column = indent + len(written_key) + 1  # just after the colon
            lines.append(f"{lead}{written_key}:{_value(value, column, indent + INDENT)}\n")
        lead = pad


def _sequence(items: list[Any], indent: int, first: str, lines: list[str], seen: set[int]) -> None:
    """A block sequence with its dashes at column `indent` (`first`: as for _mapping)."""
    _once(items, seen)
    pad = " " * indent
    lead = first or pad
    for item in items:
        kind = type(item)
        if kind is dict:
            if item:
                _mapping(item, indent + INDENT, lead + "- ", lines, seen)
            else:
                lines.append(f"{lead}- {{}}\n")
        elif kind is list:
            if item:
                _sequence(item, indent + INDENT, lead + "- ", lines, seen)
            else:
                lines.append(f"{lead}- []\n")
        else:
            lines.append(f"{lead}-{_value(item, indent + 1, indent + INDENT)}\n")
        lead = pad


def _once(collection: dict[Any, Any] | list[Any], seen: set[int]) -> None:
    if id(collection) in seen:
        raise _NotPlain  # the same dict or list twice: PyYAML writes an anchor and an alias
    seen.add(id(collection))


def _value(value: Any, column: int, indent: int) -> str:
    """A scalar written from `column` (with its leading space), continued at `indent` if it folds."""
    text, tag = _text_and_tag(value)
    place = (text, tag, column, indent)
    written = _values.get(place)
    if written is None:
        written = _writer().scalar(text, tag, column, indent, key=False)
        _remember(_values, place, written)
    return written


def _key(key: Any) -> str:
    text, tag = _text_and_tag(key)
    written = _keys.get((text, tag))
    if written is None:
        written = _writer().scalar(text, tag, 0, 0, key=True)
        _remember(_keys, (text, tag), written)
    return written


def _text_and_tag(value: Any) -> tuple[str, str]:
    """The scalar SafeRepresenter makes of `value`."""
    kind = type(value)
    if kind is str:
        return value, STR
    if kind is bool:
        return ("true" if value else "false"), BOOL
    if kind is int:
        return str(value), INT
    if value is None:
        return "null", NULL
    if kind is float:
        return _REPRESENTER.represent_float(value).value, FLOAT
    raise _NotPlain  # enums, dates, tuples, subclasses: PyYAML decides


def _remember(cache: dict[Any, Any], place: Any, written: Any) -> None:
    if len(cache) > _MAX_CACHED:
        cache.clear()
    cache[place] = written


def _writer() -> _ScalarWriter:
    writer: _ScalarWriter | None = getattr(_local, "writer", None)
    if writer is None:
        writer = _local.writer = _ScalarWriter()
    return writer


class _ScalarWriter(yaml.emitter.Emitter):
    """PyYAML's emitter, asked about one scalar at a time, in the state its block layout has there."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), allow_unicode=OPTIONS["allow_unicode"], width=OPTIONS["width"])
        self.tag_prefixes = dict(self.DEFAULT_TAG_PREFIXES)  # as a document's start sets them

    def scalar(self, text: str, tag: str, column: int, indent: int, *, key: bool) -> str:
        """How PyYAML writes this scalar: as a mapping key (after nothing on its line), or after the
        colon or dash at `column`, continuing at `indent` where it folds."""
        # As its serializer marks it: whether the text reads back as its tag plain, and quoted.
        implicit = (
            _RESOLVER.resolve(ScalarNode, text, (True, False)) == tag,
            _RESOLVER.resolve(ScalarNode, text, (False, True)) == tag,
        )
        self.event = ScalarEvent(None, tag, implicit, text)
        self.analysis = _analyses.get(text)
        if self.analysis is None:
            self.analysis = self.analyze_scalar(text)
            _remember(_analyses, text, self.analysis)
        self.style = self.prepared_tag = self.prepared_anchor = None
        self.simple_key_context = key
        if key and not self.check_simple_key():
            raise _NotPlain  # written `? key`
        self.style = self.choose_scalar_style()
        if not (implicit[0] if self.style == "" else implicit[1]):
            raise _NotPlain  # PyYAML would write the tag too (its process_tag)
        self.stream = io.StringIO()
        self.column, self.indent = column, indent
        self.whitespace = key  # a key starts its line; a value follows its colon or dash
        self.indention = False
        self.process_scalar()
        return self.stream.getvalue()
