"""Files the generator writes for users to edit (a new product's spec, a new domain's registry file):
data -> readable YAML. Values are carried as data only; PyYAML quotes what must be quoted."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """safe_dump, with multi-line text as a readable `|` block (PyYAML quotes it when it must)."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(data: dict[str, Any]) -> str:
    """Keys in the order given, unicode as is, lines up to 100 characters."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
