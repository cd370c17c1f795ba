"""The plain data policies see: a spec with its derived facts, and dbt's test results per test node
(policies.py lists the fields)."""

from __future__ import annotations

from typing import Any

from generator.errors import UserError
from generator.spec.model import DataProduct


def product_facts(spec: DataProduct) -> dict[str, Any]:
    """The spec as plain data plus the derived facts documented in policies.py."""
    data = spec.model_dump(mode="json")
    pii_columns = []
    for output in data["outputs"]:
        output["column_names"] = [c["name"] for c in output["columns"]]
        for column in output["columns"]:
            column["in_primary_key"] = column["name"] in output["primary_key"]
            own = column["constraints"]["completeness"]
            column["completeness_required"] = own if own is not None else data["sla"]["completeness"]
            if column["pii"] is not None:
                pii_columns.append(f"{output['name']}.{column['name']}")
    data["key"] = f"{data['domain']}__{data['name']}"
    data["major"] = int(str(data["version"]).split(".")[0])
    data["has_pii"] = bool(pii_columns)
    data["pii_columns"] = pii_columns
    for deprecation, model in zip(data["deprecations"], spec.deprecations, strict=True):
        announced = spec.deprecation_announced(model)
        deprecation["announced_on"] = announced.isoformat() if announced else None
        deprecation["notice_days"] = (model.serve_until - announced).days if announced else None
    return data


def test_facts(run_results: dict[str, Any]) -> list[dict[str, Any]]:
    """One plain dict per test node (data tests and unit tests) of a dbt run_results.json."""
    results = run_results.get("results") if isinstance(run_results, dict) else None
    if not isinstance(results, list):
        raise UserError("run_results has no `results` list: it is not a dbt run_results.json")
    tests = []
    for result in results:
        unique_id = str(result.get("unique_id", ""))
        resource_type = unique_id.split(".", 1)[0]
        if resource_type not in ("test", "unit_test"):
            continue  # models, seeds, ... when the results come from `dbt build`
        node = result.get("node") or {}
        status = str(result.get("status", "")).lower()
        failures = result.get("failures")
        tests.append(
            {
                "unique_id": unique_id,
                "name": node.get("name") or _test_name(unique_id),
                "resource_type": resource_type,
                "status": status,
                "failures": int(failures) if isinstance(failures, int) else 0,
                "message": str(result.get("message") or ""),
                "execution_time": float(result.get("execution_time") or 0.0),
                "severity": _severity(status, node.get("config") or {}),
            }
        )
    return tests


def _test_name(unique_id: str) -> str:
    # test.<project>.<name>[.<hash>] and unit_test.<project>.<model>.<name>
    parts = unique_id.split(".")
    if parts[0] == "unit_test":
        return parts[-1]
    return parts[2] if len(parts) > 2 else unique_id


def _severity(status: str, config: dict[str, Any]) -> str:
    """dbt reports "warn" only when a test's failures stay below its error threshold, so a warn
    status is a warning whatever the configured severity. Otherwise the node's configured severity
    counts (present when the results carry nodes, as dbt's in-process results do); dbt's
    run_results.json carries no config, and a test is error-severity unless configured otherwise."""
    if status == "warn":
        return "warn"
    configured = str(config.get("severity") or "error").lower()
    return "warn" if configured == "warn" else "error"
