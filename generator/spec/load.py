"""Load a spec file: YAML -> validated DataProduct, or a SpecError listing every problem at once.

Each problem names the file, the line, and the field path with list indexes replaced by the item's
name (`outputs.orders.columns.status.type`, not `outputs[0].columns[4].type`); see problems.py.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from generator.errors import Problem, SpecError
from generator.spec.model import SPEC_VERSION, DataProduct
from generator.spec.problems import invalid, load_mapping, read_file

_WORDING = {
    "extra_forbidden": "unknown field (check its spelling; see `datamesh schema` for the fields allowed)",
    "missing": "required field is missing",
}


def load_spec(path: Path, display: str | None = None) -> DataProduct:
    """Parse and validate one spec file. `display` is the name shown in errors (repo-relative)."""
    shown = display or str(path)
    return parse_spec(read_file(path, shown), shown)


def parse_spec(text: str, shown: str) -> DataProduct:
    data = load_mapping(text, shown, "the spec")
    version = data.get("spec_version")
    if type(version) is int and version != SPEC_VERSION:
        # Another version's fields mean other things: say which version it is, and nothing else.
        raise SpecError([Problem(shown, "spec_version", _other_version(version), _line_of(text, "spec_version"))])
    try:
        return DataProduct.model_validate(data)
    except ValidationError as exc:
        raise invalid(shown, text, data, exc, _WORDING) from exc


def _other_version(version: int) -> str:
    if version < SPEC_VERSION:
        return (
            f"this spec is version {version}; this generator reads version {SPEC_VERSION}: run "
            "`datamesh migrate` to rewrite it (comments and formatting are kept)"
        )
    return (
        f"{version} is newer than this generator reads (up to {SPEC_VERSION}): upgrade datamesh (the "
        "generator) to read it"
    )


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return None
