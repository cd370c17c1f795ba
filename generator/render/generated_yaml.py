"""The YAML text of generated files: exactly what `yaml.safe_dump` writes, mostly written by libyaml.

Rendering a thousand products writes 6,000 YAML files; most of PyYAML's time goes to its Python
representer (a node per value, with the resolver asked twice about every scalar) and its Python
emitter. This module builds the same nodes directly from the plain data the renderers produce
(dicts, lists, strings, numbers, booleans, None), asks the resolver once per distinct scalar, and
lets libyaml's emitter (CSafeDumper) write them, where that writes PyYAML's bytes.

libyaml's emitter writes the same bytes as PyYAML's own for text of printable characters of the
Basic Multilingual Plane; it differs on characters beyond the BMP and control characters, on line
breaks and tabs in a double-quoted scalar (how it escapes and folds them), and on long mapping
keys (PyYAML writes a key of over 128 characters as `? key`, libyaml one of over 128 bytes, and
near that length they differ anyway). A line break or a tab in a scalar PyYAML writes plain or
single-quoted comes out the same. Data with anything else (other types, a dict or list appearing
twice, which PyYAML writes as an anchor and alias) goes through PyYAML as it is
(tests/test_render_dbt.py compares the two on thousands of generated texts).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from generator.spec.yaml_data import ResolvedOnce

FAST_DUMPER: type | None = getattr(yaml, "CSafeDumper", None)
OPTIONS: dict[str, Any] = {"sort_keys": False, "allow_unicode": True, "width": 100, "default_flow_style": False}

# The data is checked as JSON first (json's C encoder walks it faster than Python would): json
# escapes control characters (\n, \u0001, ...) and leaves every other character as it is; only
# data with a line break or a tab is walked string by string.
_NOT_SAME_IN_LIBYAML = re.compile("[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]|\\\\[bfnrtu]")
# What libyaml writes as PyYAML does wherever it is in a string, line breaks and tabs apart.
_SAME_BESIDE_BREAKS = re.compile("[^\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]")
# A mapping key longer than this (in UTF-8) is written by PyYAML: well below where the two differ.
MAX_KEY_BYTES = 64
_ANALYZER = yaml.emitter.Emitter(None)  # only its analyze_scalar: how PyYAML would quote a scalar
_REPRESENTER = yaml.representer.SafeRepresenter()  # only its represent_float: PyYAML's spelling

_TAG = "tag:yaml.org,2002:"
STR, INT, BOOL, NULL, MAP, SEQ = (_TAG + name for name in ("str", "int", "bool", "null", "map", "seq"))


def dump_yaml(data: Any) -> str:
    """`yaml.safe_dump(data, **OPTIONS)`, byte for byte; through libyaml when that writes the same."""
    node = _libyaml_node(data)
    if node is None:
        return yaml.dump(data, Dumper=yaml.SafeDumper, **OPTIONS)
    stream = io.StringIO()
    dumper = _CachingDumper(stream, **OPTIONS)
    try:  # what yaml.dump does once the data is represented as nodes
        dumper.open()
        dumper.serialize(node)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


def through_libyaml(data: Any) -> bool:
    """Whether dump_yaml writes `data` through libyaml."""
    return _libyaml_node(data) is not None


class _NotPlain(Exception):
    """Data PyYAML's representer must see itself."""


def _libyaml_node(data: Any) -> Node | None:
    """The node tree SafeRepresenter builds for `data` (default style, block collections), when
    libyaml writes it as PyYAML does; None otherwise."""
    if FAST_DUMPER is None or not _strings_alike(data):
        return None
    try:
        return _node(data, set())
    except _NotPlain:
        return None


def _node(data: Any, seen: set[int]) -> Node:
    kind = type(data)
    if kind is str:
        return ScalarNode(STR, data)
    if kind is dict:
        if id(data) in seen:
            raise _NotPlain  # the same dict twice: PyYAML writes an anchor and an alias
        seen.add(id(data))
        pairs = []
        for key, value in data.items():
            if type(key) is str and len(key) > MAX_KEY_BYTES // 4 and len(key.encode("utf-8")) > MAX_KEY_BYTES:
                raise _NotPlain
            pairs.append((_node(key, seen), _node(value, seen)))
        return MappingNode(MAP, pairs, flow_style=False)
    if kind is list:
        if id(data) in seen:
            raise _NotPlain
        seen.add(id(data))
        return SequenceNode(SEQ, [_node(item, seen) for item in data], flow_style=False)
    if kind is bool:
        return ScalarNode(BOOL, "true" if data else "false")
    if kind is int:
        return ScalarNode(INT, str(data))
    if data is None:
        return ScalarNode(NULL, "null")
    if kind is float:
        return _REPRESENTER.represent_float(data)  # type: ignore[no-any-return]
    raise _NotPlain  # enums, dates, tuples, subclasses: PyYAML decides


def _strings_alike(data: Any) -> bool:
    """Whether libyaml writes every string of `data` as PyYAML does (see the module's docstring)."""
    try:
        text = json.dumps(data, ensure_ascii=False)
    except (TypeError, ValueError):  # not plain JSON data: PyYAML it is
        return False
    if _NOT_SAME_IN_LIBYAML.search(text) is None:
        return True
    for value, key in _strings(data):
        if _SAME_BESIDE_BREAKS.search(value):
            return False  # beyond the BMP, or a control character other than a line break or a tab
        if ("\n" in value or "\t" in value) and not _written_alike(value, key):
            return False
    return True


def _written_alike(value: str, key: bool) -> bool:
    """Whether PyYAML writes this scalar plain or single-quoted (a multi-line key it double-quotes)."""
    analysis = _ANALYZER.analyze_scalar(value)
    return analysis.allow_single_quoted and not (key and analysis.multiline)


def _strings(data: Any, key: bool = False) -> Iterator[tuple[str, bool]]:
    if isinstance(data, str):
        yield data, key
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _strings(k, True)
            yield from _strings(v)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item)


class _CachingDumper(ResolvedOnce, FAST_DUMPER or yaml.SafeDumper):  # type: ignore[misc]
    """libyaml's writer, with the resolver asked once per distinct scalar (whether a text may be
    written plain depends on the text alone)."""
