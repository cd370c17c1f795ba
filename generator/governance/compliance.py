"""Compliance you can see: a record per policy evaluation, a quality score per run, a mesh report.

summarize(findings)         per policy: evaluated, passed, warned or blocked, with messages
quality_score(spec, tests)  0-100 from the weighted results of dbt's tests and quality rules
record(conn, ...)           one row of datamesh_catalog.compliance_records (migration 0003)
latest(conn)                the newest gate and static record of every product (or of a domain's)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg2.extensions
from psycopg2.extras import Json, RealDictCursor

from generator.governance.policies import Finding
from generator.layout import CATALOG_SCHEMA
from generator.spec.model import DataProduct
from generator.warehouse.transaction import transaction

Moment = Literal["static", "gate"]

# Weights of the quality score: a quality rule is a promise the domain wrote down, an
# error-severity test guards the contract, a warn-severity test is advice.
QUALITY_RULE_WEIGHT = 3.0
ERROR_TEST_WEIGHT = 2.0
WARN_TEST_WEIGHT = 1.0
# What a result earns of its weight: a warn is half a failure.
_EARNED = {"pass": 1.0, "warn": 0.5, "fail": 0.0, "error": 0.0}


@dataclass(frozen=True)
class PolicySummary:
    policy: str
    enforcement: str
    outcome: Literal["passed", "warned", "blocked"]
    checks: int
    failed: int
    messages: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "enforcement": self.enforcement,
            "outcome": self.outcome,
            "checks": self.checks,
            "failed": self.failed,
            "messages": list(self.messages),
        }


def summarize(findings: list[Finding]) -> list[PolicySummary]:
    """One summary per policy that had at least one subject, in the order policies were met."""
    grouped: dict[str, list[Finding]] = {}
    for finding in findings:
        grouped.setdefault(finding.policy, []).append(finding)
    summaries = []
    for policy, group in grouped.items():
        failed = [f for f in group if not f.passed]
        enforcement = group[0].enforcement
        outcome = "passed" if not failed else ("blocked" if enforcement == "blocking" else "warned")
        summaries.append(
            PolicySummary(policy, enforcement, outcome, len(group), len(failed), [f.message for f in failed])
        )
    return summaries


def verdict(summaries: list[PolicySummary]) -> Literal["pass", "warn", "block"]:
    outcomes = {s.outcome for s in summaries}
    return "block" if "blocked" in outcomes else "warn" if "warned" in outcomes else "pass"


def quality_score(spec: DataProduct, tests: list[dict[str, Any]]) -> float | None:
    """Weighted share (0-100) of dbt's test results that passed; None when nothing was tested.

    `tests` are policies.test_facts of the test step. A quality rule of the spec is the dbt test
    named `<output>__<rule>` (render_dbt); skipped tests count for nothing either way."""
    rules = {f"{o.name}__{r.name}" for o in spec.outputs for r in o.quality_rules}
    total = earned = 0.0
    for test in tests:
        share = _EARNED.get(test["status"])
        if share is None:
            continue
        if test["name"] in rules:
            weight = QUALITY_RULE_WEIGHT
        else:
            weight = ERROR_TEST_WEIGHT if test["severity"] == "error" else WARN_TEST_WEIGHT
        total += weight
        earned += weight * share
    return None if total == 0 else round(100.0 * earned / total, 1)


def record(
    conn: psycopg2.extensions.connection,
    spec: DataProduct,
    moment: Moment,
    findings: list[Finding],
    run_id: str | None = None,
    facts: dict[str, Any] | None = None,
    changes: list[dict[str, Any]] | None = None,
    score: float | None = None,
) -> dict[str, Any]:
    """Write one compliance record and return it as the report shows it."""
    summaries = summarize(findings)
    row = {
        "domain": spec.domain,
        "product": spec.name,
        "version": spec.version,
        "moment": moment,
        "run_id": run_id,
        "verdict": verdict(summaries),
        "policies_evaluated": len(summaries),
        "policies_passed": sum(s.outcome == "passed" for s in summaries),
        "policies_warned": sum(s.outcome == "warned" for s in summaries),
        "policies_blocked": sum(s.outcome == "blocked" for s in summaries),
        "checks_evaluated": len(findings),
        "policies": [s.as_dict() for s in summaries],
        "facts": facts or {},
        "changes": changes or [],
        "quality_score": score,
    }
    columns = list(row)
    with transaction(conn) as cur:
        cur.execute(
            f"INSERT INTO {CATALOG_SCHEMA}.compliance_records ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})",
            [Json(v) if isinstance(v, dict | list) else v for v in row.values()],
        )
    return row


def latest(
    conn: psycopg2.extensions.connection,
    history: int = 5,
    domain: str | None = None,
    product: str | None = None,
) -> list[dict[str, Any]]:
    """Per product: its newest gate record, its newest static record, and its last `history`
    quality scores (newest first). Products with no record at all are left out. `domain` (and
    `product`) narrow it to one domain (one product), read from the records' index, not filtered
    from the whole mesh's."""
    with transaction(conn) as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.compliance_records",))
        if cur.fetchone()[0] is None:
            return []
    where = ["TRUE"]
    if domain is not None:
        where.append("domain = %(domain)s")
    if product is not None:
        where.append("product = %(product)s")
    chosen = " AND ".join(where)
    params = {"domain": domain, "product": product}
    with transaction(conn) as cur:
        cur = conn.cursor(cursor_factory=RealDictCursor)
        cur.execute(
            f"""SELECT DISTINCT ON (domain, product, moment) *
                  FROM {CATALOG_SCHEMA}.compliance_records
                 WHERE {chosen}
                 ORDER BY domain, product, moment, evaluated_at DESC, id DESC""",
            params,
        )
        rows = cur.fetchall()
        cur.execute(
            f"""SELECT domain, product, array_agg(quality_score ORDER BY evaluated_at DESC, id DESC) AS scores
                  FROM {CATALOG_SCHEMA}.compliance_records
                 WHERE moment = 'gate' AND quality_score IS NOT NULL AND {chosen}
                 GROUP BY domain, product""",
            params,
        )
        scores = {
            (r["domain"], r["product"]): [float(s) for s in r["scores"][:history]] for r in cur.fetchall()
        }
    products: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["domain"], row["product"])
        entry = products.setdefault(key, {"domain": key[0], "product": key[1], "gate": None, "static": None})
        row = dict(row)
        if row["quality_score"] is not None:
            row["quality_score"] = float(row["quality_score"])
        if isinstance(row["evaluated_at"], datetime):
            row["evaluated_at"] = row["evaluated_at"].isoformat(timespec="seconds")
        entry[row["moment"]] = row
    for key, entry in products.items():
        entry["scores"] = scores.get(key, [])
    return [products[k] for k in sorted(products)]


def compliance_domains(conn: psycopg2.extensions.connection) -> list[str]:
    """The domains that have compliance records, in order: one index probe per domain (a skip scan
    written as a recursive query), however many records the domains hold."""
    with transaction(conn) as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{CATALOG_SCHEMA}.compliance_records",))
        if cur.fetchone()[0] is None:
            return []
        cur.execute(
            f"""WITH RECURSIVE d (domain) AS (
                    SELECT min(domain) FROM {CATALOG_SCHEMA}.compliance_records
                    UNION ALL
                    SELECT (SELECT min(c.domain) FROM {CATALOG_SCHEMA}.compliance_records c WHERE c.domain > d.domain)
                      FROM d WHERE d.domain IS NOT NULL)
                SELECT domain FROM d WHERE domain IS NOT NULL"""
        )
        return [r[0] for r in cur.fetchall()]
