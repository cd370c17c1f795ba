"""Check a document against the Open Data Contract Standard, as the `open-data-contract-standard`
package ships it: its JSON Schema (strict: enums, required fields, no unknown keys) and its
pydantic model (what tools such as datacontract-cli parse contracts with).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

Loc = tuple[str | int, ...]


@functools.cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text("utf-8"))
    return jsonschema.Draft201909Validator(schema)


def violations(document: Any) -> list[tuple[Loc, str]]:
    """Every place `document` breaks the standard, as (location, what is wrong), sorted by location."""
    found = sorted(set(_schema_violations(document)), key=lambda v: [str(p) for p in v[0]])
    if found:
        return found
    from open_data_contract_standard.model import OpenDataContractStandard
    from pydantic import ValidationError

    try:
        OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        return [(_model_loc(err["loc"]), err["msg"]) for err in exc.errors()]
    return []


def _schema_violations(document: Any) -> Iterator[tuple[Loc, str]]:
    for error in _validator().iter_errors(document):
        yield from _leaves(error)


def _leaves(error: Any) -> Iterator[tuple[Loc, str]]:
    """The innermost errors: a `oneOf`/`anyOf`/`if-then` failure names the branch that came closest."""
    if error.context:
        import jsonschema.exceptions

        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and best is not error:
            yield from _leaves(best)
            return
    message = error.message
    if error.validator == "unevaluatedProperties" or error.validator == "additionalProperties":
        message = f"not a field of the standard here: {message}"
    yield tuple(error.absolute_path), message


def _model_loc(loc: tuple[Any, ...]) -> Loc:
    # pydantic names union branches in locations (`Team`, `list[TeamMember]`): keep the document's keys.
    return tuple(p for p in loc if isinstance(p, int) or not (p[:1].isupper() or "[" in p))


def dotted(loc: Loc) -> str:
    """`schema[0].properties[2].logicalType` for ("schema", 0, "properties", 2, "logicalType")."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
