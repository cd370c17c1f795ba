"""YAML documents as the Python data `yaml.safe_load` gives, built faster from libyaml's nodes.

Loading a thousand specs is half YAML: libyaml (CSafeLoader) parses and composes the node tree in
C, then PyYAML's SafeConstructor turns each node into Python in Python, generically (a generator per
collection, a constructor looked up per node). Specs are plain mappings, lists and scalars, so
here strings, mappings and lists are built directly, and the other scalars (int, float, bool,
null, timestamp) by SafeConstructor's own methods. Anything else (merge keys, explicit tags, a
node reached twice through an alias, an unhashable key) goes to SafeConstructor as it is, so the
data, and every error, is what `yaml.safe_load` gives (tests/test_yaml_data.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# libyaml's parser when PyYAML was built with it (the wheels are): same documents, ~10x faster.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
STR, MAP, SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_SAFE = yaml.constructor.SafeConstructor()
_SCALARS = {
    _TAG + "null": _SAFE.construct_yaml_null,
    _TAG + "bool": _SAFE.construct_yaml_bool,
    _TAG + "int": _SAFE.construct_yaml_int,
    _TAG + "float": _SAFE.construct_yaml_float,
    _TAG + "timestamp": _SAFE.construct_yaml_timestamp,
}


class ResolvedOnce:
    """Mixin for a PyYAML Loader: asks the resolver about each distinct scalar once. libyaml's
    composer asks it about every scalar, in Python, and the tag a scalar resolves to depends on its
    text alone (the Safe resolver has no path resolvers); specs repeat their keys and many values.
    Each class using it keeps its own cache."""

    _tags: ClassVar[dict[tuple[str, tuple[bool, bool]], str]] = {}
    _MAX_TAGS = 200_000  # a bound for long-lived processes

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._tags = {}

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not ScalarNode:
            return super().resolve(kind, value, implicit)  # type: ignore[misc,no-any-return]
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            if len(self._tags) > self._MAX_TAGS:
                self._tags.clear()
            tag = self._tags[key] = super().resolve(kind, value, implicit)  # type: ignore[misc]
        return tag


class CachingLoader(ResolvedOnce, YAML_LOADER):  # type: ignore[misc,valid-type]
    """YAML_LOADER with the resolver asked once per distinct scalar."""


def load_yaml(text: str) -> Any:
    """The document's data, as `yaml.load(text, Loader=YAML_LOADER)` (raises yaml.YAMLError)."""
    loader = CachingLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else construct(loader, node)
    finally:
        loader.dispose()


def construct(loader: yaml.SafeLoader, node: Node) -> Any:
    """`loader.construct_document(node)`, built directly where the data is plain."""
    try:
        return _data(node, set())
    except _NotPlain:
        return loader.construct_document(node)


class _NotPlain(Exception):
    """A node SafeConstructor must see itself."""


def _data(node: Node, seen: set[int]) -> Any:
    kind = type(node)
    if kind is ScalarNode:
        if node.tag == STR:
            return node.value
        scalar = _SCALARS.get(node.tag)
        if scalar is None:
            raise _NotPlain
        return scalar(node)
    if id(node) in seen:
        raise _NotPlain  # reached twice (an alias): SafeConstructor gives both the same object
    seen.add(id(node))
    if kind is MappingNode and node.tag == MAP:
        mapping = {}
        for key_node, value_node in node.value:
            key = _data(key_node, seen)  # a merge key `<<` has a tag of its own: not plain
            if isinstance(key, dict | list):
                raise _NotPlain  # unhashable: SafeConstructor's error
            mapping[key] = _data(value_node, seen)
        return mapping
    if kind is SequenceNode and node.tag == SEQ:
        return [_data(item, seen) for item in node.value]
    raise _NotPlain
