"""spec/yaml_data.py gives the data, and the errors, that yaml.safe_load gives (through libyaml where
PyYAML has it, as the spec loader always did: YAML_LOADER)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from generator.spec.yaml_data import YAML_LOADER, load_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

TRICKY_DOCUMENTS = [
    "name: orders\nversion: 1.2.0\ncount: 12\nratio: 0.5\nflag: yes\nnothing: ~\nempty:\n",
    "ints: [0x1f, 0o17, 017, 1_000, -3, +4, '5', 190:20:30]\nfloats: [.inf, -.Inf, .nan, 1e3, 6.8523015e+5]",
    "when: 2024-01-01\nat: 2024-01-01T10:20:30Z\nlocal: 2001-12-14 21:59:43.10 -5\n",
    "a: &shared [1, 2]\nb: *shared\n",
    "base: &base {x: 1, y: 2}\nmerged:\n  <<: *base\n  y: 3\n",
    "tagged: !!str 123\nbinary: !!binary aGVsbG8=\nset: !!set {a, b}\nfloat: !!float 1\n",
    "=: the value key\nkey: value\nkey: again\n",
    "- just\n- a\n- list\n",
    "plain scalar",
    "",
    "# only a comment\n",
    "multi: |\n  line one\n  line two\nfolded: >\n  one\n  two\nquoted: \"tab\\there\"\n",
    "nested:\n  - {name: a, tests: [unique, not_null]}\n  - name: b\n    meta: {owner: {team: t}}\n",
    "true: 1\n1: one\nnull: none\n2024-01-01: date key\n",
]


def safe_load(text: str) -> object:
    return yaml.load(text, Loader=YAML_LOADER)


def safe_load_or_error(text: str) -> tuple[str, object]:
    try:
        return "data", safe_load(text)
    except yaml.YAMLError as exc:
        return "error", str(exc)


def load_or_error(text: str) -> tuple[str, object]:
    try:
        return "data", load_yaml(text)
    except yaml.YAMLError as exc:
        return "error", str(exc)


def same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, float) and a != a:
        return b != b  # nan
    return a == b


@pytest.mark.parametrize("text", TRICKY_DOCUMENTS)
def test_tricky_documents_load_as_safe_load_loads_them(text: str) -> None:
    expected, got = safe_load_or_error(text), load_or_error(text)
    assert expected[0] == got[0] and same(expected[1], got[1]), (expected, got)


def test_an_alias_is_the_same_object_as_its_anchor() -> None:
    data = load_yaml("a: &shared [1, 2]\nb: *shared\n")
    assert data["a"] is data["b"]


@pytest.mark.parametrize("text", ["{[a]: 1}", "? [complex, key]\n: value\n", "a: [1, 2\n", "a: b: c\n", "- a\nb: c\n"])
def test_broken_documents_raise_the_same_error(text: str) -> None:
    expected, got = safe_load_or_error(text), load_or_error(text)
    assert expected[0] == "error" and got == expected


def test_every_yaml_file_of_the_repo_loads_as_safe_load_loads_it() -> None:
    files = [p for pattern in ("dbt/**/*.yml", "dbt/**/*.yaml", "domains/*.yaml", "policies/**/*.yaml",
                               "docker-compose.yml", ".github/**/*.yml")
             for p in REPO_ROOT.glob(pattern) if "dbt_packages" not in p.parts and "target" not in p.parts]
    assert len(files) > 40
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert same(safe_load(text), load_yaml(text)), path
