"""Random valid specs, from a seed: every field of the spec model, with the text and numbers that
are hard to carry (quotes, colons, `#`, new lines, unicode; fractions; both kinds of accepted
values). The round-trip tests of the ODCS contract run over these (hypothesis is not a dependency:
a seeded generator repeats any failure from its seed)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from generator.spec.model import DataProduct

TYPES = [
    "text", "varchar(40)", "char(2)", "boolean", "smallint", "integer", "bigint", "numeric(12,2)",
    "numeric(10,0)", "real", "double precision", "date", "time", "timestamp", "timestamptz", "uuid", "json", "jsonb",
]
NUMERIC = {"smallint", "integer", "bigint", "numeric(12,2)", "numeric(10,0)", "real", "double precision"}
TEXTS = [
    "Plain words.", "Quotes ' and \" and a colon: here", "# not a comment", "Two lines\nof text", "Ünïcødé — dash",
    "- looks like a list", "yes", "null", "1.0", "{ braces } and [brackets]", "trailing colon:", "@at start",
]
CONDITIONS = ["amount >= 0", "status in ('a', 'b')", "note is null or note like '%@%'", "x <> 'y:z'"]
QUERIES = ["SELECT COUNT(*) FROM {o} WHERE amount < 0", "select count(*) from {o} where id is null",
           "WITH bad AS (SELECT * FROM {o} WHERE x IS NULL) SELECT COUNT(*) FROM bad"]
CRONS = ["0 2 * * *", "*/15 * * * *", "@daily", "@hourly", "30 1 * * 1-5"]


class Names:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def __call__(self, prefix: str = "n") -> str:
        while True:
            name = f"{prefix}{self.rng.choice('abcdefghij')}{self.rng.randrange(1000)}"
            if name not in self.used:
                self.used.add(name)
                return name


def random_spec(seed: int) -> DataProduct:
    rng = random.Random(seed)
    name = Names(rng)
    maybe = lambda p=0.5: rng.random() < p  # noqa: E731 - a coin, read as a word
    text = lambda: rng.choice(TEXTS)  # noqa: E731
    major = rng.randrange(0, 4)
    inputs_products = [
        {"domain": name("d"), "product": name("p"), "output": name("o"), "major": rng.randrange(0, 3)}
        for _ in range(rng.randrange(0, 3))
    ]
    outputs: list[dict[str, Any]] = []
    for _ in range(rng.randrange(1, 4)):
        out = name("out")
        columns = []
        for _ in range(rng.randrange(1, 6)):
            sql_type = rng.choice(TYPES)
            constraints: dict[str, Any] = {}
            if maybe(0.4):
                constraints["not_null"] = True
            if maybe(0.2):
                constraints["unique"] = True
            if maybe(0.2):
                values = rng.sample(["a", "b c", "d:e", "'q'", "1", 2, 3, "#x", "ü"], rng.randrange(1, 5))
                constraints["accepted_values"] = values
            if maybe(0.3):
                low = round(rng.uniform(-100, 100), rng.choice([0, 2]))
                constraints["min"] = low
                if maybe():
                    constraints["max"] = low + round(rng.uniform(0, 50), 1)
            elif maybe(0.1) and sql_type in NUMERIC:
                constraints["max"] = rng.randrange(5)
            if maybe(0.2):
                constraints["completeness"] = rng.choice([0, 85, 99.5, 12.25, 100, 33.3])
            column: dict[str, Any] = {"name": name("c"), "type": sql_type}
            if maybe(0.7):
                column["description"] = text()
            if constraints:
                column["constraints"] = constraints
            if maybe(0.2):
                column["pii"] = rng.choice(["email", "phone", "name", "address", "ip_address", "national_id", "other"])
            columns.append(column)
        rules = []
        for _ in range(rng.randrange(0, 3)):
            rule: dict[str, Any] = {"name": name("r"), "threshold": rng.randrange(0, 5)}
            if maybe():
                rule["condition"] = rng.choice(CONDITIONS)
            else:
                rule["query"] = rng.choice(QUERIES).format(o=out)
            if maybe():
                rule["severity"] = rng.choice(["error", "warn"])
            if maybe():
                rule["description"] = text()
            rules.append(rule)
        keys = [c["name"] for c in rng.sample(columns, rng.randrange(0, min(3, len(columns)) + 1))]
        outputs.append({"name": out, "description": text(), "primary_key": keys, "columns": columns,
                        "quality_rules": rules})
    # references: to another output's column of this product, or to an input product's output
    for output in outputs:
        for column in output["columns"]:
            if maybe(0.15):
                target = rng.choice(outputs)
                ref = {"output": target["name"], "column": rng.choice(target["columns"])["name"]}
                column.setdefault("constraints", {})["references"] = ref
            elif inputs_products and maybe(0.15):
                source = rng.choice(inputs_products)
                ref = {"output": source["output"], "column": name("k"), "product": source["product"]}
                if maybe():
                    ref["domain"] = source["domain"]
                column.setdefault("constraints", {})["references"] = ref
    roles = [name("role") for _ in range(rng.randrange(0, 3))] + (["domain_lookalike"] if maybe(0.2) else [])
    domains = [name("dom") for _ in range(rng.randrange(0, 3))]
    spec: dict[str, Any] = {
        "spec_version": 1,
        "name": name("prod"),
        "domain": name("dom"),
        "version": f"{major}.{rng.randrange(10)}.{rng.randrange(10)}",
        "description": text(),
        "owner": {"team": name("team"), "email": f"{name('e')}@example.com"},
        "classification": rng.choice(["public", "internal", "confidential", "restricted"]),
        "sla": {"freshness_hours": rng.choice([0.25, 1, 24, 26.5, 0.1, 168])},
        "outputs": outputs,
    }
    if maybe():
        spec["owner"]["slack"] = rng.choice(["#team-data", "", "Channel: x"])
    if maybe():
        spec["tags"] = [name("t") for _ in range(rng.randrange(1, 4))]
    if maybe(0.7):
        spec["retention_days"] = rng.randrange(1, 4000)
    if maybe():
        spec["sla"]["availability"] = rng.choice([99.9, 95, 100, 12.5])
    if maybe():
        spec["sla"]["completeness"] = rng.choice([99.5, 90, 100, 0.5])
    sources = [{"schema": name("s"), "table": name("tb")} for _ in range(rng.randrange(0, 3))]
    for source in sources:
        if maybe():
            source["description"] = text()
    if inputs_products or sources:
        spec["inputs"] = {"products": inputs_products, "sources": sources}
    if not inputs_products or maybe():
        spec["schedule"] = rng.choice(CRONS)
    if roles or domains:
        spec["access"] = {
            "roles": roles,
            "domains": domains,
            "pii_roles": [r for r in roles if maybe()],
            "pii_domains": [d for d in domains if maybe()],
        }
    if maybe():
        spec["changelog"] = [
            {
                "version": f"{major}.{i}.0",
                **({"date": (dt.date(2024, 1, 1) + dt.timedelta(days=i * 40)).isoformat()} if maybe() else {}),
                "changes": [text() for _ in range(rng.randrange(0, 3))],
                "breaking": maybe(0.2),
            }
            for i in range(rng.randrange(1, 3))
        ]
    if major > 0 and maybe():
        spec["deprecations"] = [
            {
                "major": m,
                "serve_until": (dt.date(2025, 1, 1) + dt.timedelta(days=m)).isoformat(),
                **({"note": text()} if maybe() else {}),
                **({"announced": "2024-12-01"} if maybe() else {}),
                **({"force_drop": True} if maybe(0.3) else {}),
            }
            for m in rng.sample(range(major), rng.randrange(1, major + 1))
        ]
    return DataProduct.model_validate(spec)
