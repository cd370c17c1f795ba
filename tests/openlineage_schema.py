"""Validate OpenLineage events against OpenLineage's JSON Schema (tests/openlineage_spec, vendored).
Every schema is read as JSON Schema 2020-12, the dialect of the spec (dbt-run-run-facet.json names
an older, unversioned one).

An event is checked against the spec's RunEvent (which checks each facet's base: _producer,
_schemaURL), and then every facet against the schema its `_schemaURL` names:
- a standard facet: its file in tests/openlineage_spec/facets, at the version the URL names;
- a dbt processor facet: the schema openlineage-integration-common ships under the file name the
  URL ends with (the URLs point at a GitHub tree, not at the schemas' `$id`s); one it does not
  ship (dbt-model-dataset-facet.json) is checked as the base facet of its place only;
- a facet whose URL is the spec's base facet (the Airflow provider's): that base.
A facet naming a schema found nowhere is a problem: nothing passes unchecked.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import openlineage.common
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).parent / "openlineage_spec"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
DBT_SCHEMAS = Path(openlineage.common.__file__).parent / "schema"
# Where a facet sits -> the spec's base facet for that place.
BASES = {
    "run": "RunFacet",
    "job": "JobFacet",
    "dataset": "DatasetFacet",
    "input": "InputDatasetFacet",
    "output": "OutputDatasetFacet",
}


@cache
def registry() -> Registry:
    resources = []
    for path in [*sorted(SPEC_DIR.glob("OpenLineage*.json")), *sorted((SPEC_DIR / "facets").glob("*.json"))]:
        contents = json.loads(path.read_text())
        resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
    for path in sorted(DBT_SCHEMAS.glob("*.json")):
        contents = json.loads(path.read_text())
        if "$id" in contents:
            resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
    return Registry().with_resources(resources)


def _check(instance: Any, ref: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        {"$ref": ref}, registry=registry(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(instance)]


def _facet_ref(url: str, place: str) -> str | None:
    """The schema to check a facet against, from its _schemaURL; None if none is known."""
    base, _, fragment = url.partition("#")
    if base == CORE:
        return url
    if base.startswith("https://openlineage.io/spec/facets/"):
        return url if (SPEC_DIR / "facets" / base.rsplit("/", 1)[1]).is_file() and fragment else None
    file = base.rsplit("/", 1)[1]
    if "/integration/common/" in base:
        shipped = DBT_SCHEMAS / file
        if shipped.is_file():
            contents = json.loads(shipped.read_text())
            (definition,) = [d for d in contents["$defs"] if d.endswith("Facet")]
            return f"{contents['$id']}#/$defs/{definition}"
        return f"{CORE}#/$defs/{BASES[place]}"
    return None


def _facets(event: dict) -> list[tuple[str, str, dict]]:
    """(where, place, facet) of every facet of the event."""
    found = [(f"run.facets.{k}", "run", v) for k, v in (event.get("run", {}).get("facets") or {}).items()]
    found += [(f"job.facets.{k}", "job", v) for k, v in (event.get("job", {}).get("facets") or {}).items()]
    for side in ("inputs", "outputs"):
        for i, dataset in enumerate(event.get(side) or []):
            found += [(f"{side}[{i}].facets.{k}", "dataset", v) for k, v in (dataset.get("facets") or {}).items()]
            extra = "inputFacets" if side == "inputs" else "outputFacets"
            place = "input" if side == "inputs" else "output"
            found += [(f"{side}[{i}].{extra}.{k}", place, v) for k, v in (dataset.get(extra) or {}).items()]
    return found


def problems(event: dict) -> list[str]:
    """Everything in `event` the OpenLineage schema refuses, one line each; [] when it is valid."""
    found = [f"event {p}" for p in _check(event, f"{CORE}#/$defs/RunEvent")]
    try:  # format "date-time": jsonschema checks it only with an optional package installed
        datetime.fromisoformat(event.get("eventTime", ""))
    except ValueError:
        found.append(f"event eventTime: {event.get('eventTime')!r} is not an ISO 8601 date-time")
    if event.get("schemaURL", "").partition("#")[0] != CORE:
        found.append(f"event schemaURL {event.get('schemaURL')!r} is not {CORE}")
    for where, place, facet in _facets(event):
        url = facet.get("_schemaURL", "")
        ref = _facet_ref(url, place)
        if ref is None:
            found.append(f"{where}: no schema known for _schemaURL {url!r}")
            continue
        found += [f"{where} ({url}) {p}" for p in _check(facet, ref)]
    return found
