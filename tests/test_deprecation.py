"""Deprecation that protects consumers: the consumer's gate warns while it reads a deprecated major
and blocks once it is past serve_until (with the producer's note); a deprecation must give 30 days'
notice; the producer's publish keeps a major past its date while someone still reads it, unless the
spec says force_drop; the card and search show deprecations and usage."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from consumer_roles import ANALYST, SCIENTIST
from test_consumer import _wait_for_log_prefix, login, product, ship
from test_gate import SALES, entry, facts

from generator.catalog import store, usage
from generator.catalog.card import format_card, load_card
from generator.catalog.search import search
from generator.consumer import read
from generator.governance.facts import product_facts
from generator.governance.gate import evaluate
from generator.spec.mesh import ProductEntry
from generator.spec.model import DataProduct
from generator.warehouse.connection import Warehouse
from generator.warehouse.transaction import transaction

pytest_plugins = ["catalog_db", "consumer_db"]
REPO_ROOT = Path(__file__).resolve().parents[1]
NO_TESTS: dict[str, Any] = {"results": []}


def _deprecated_input_facts(days_left: int) -> dict[str, Any]:
    found = facts(spec_entry=entry(SALES))
    until = dt.date.today() + dt.timedelta(days=days_left)
    found["inputs"][0].update(
        deprecated=True, serve_until=until.isoformat(), days_left=days_left, note="read orders_fact v2: amount is net"
    )
    return found


def test_the_consumer_gate_warns_while_it_reads_a_deprecated_major():
    result = evaluate(REPO_ROOT, entry(SALES), NO_TESTS, facts=_deprecated_input_facts(12))
    assert result.verdict == "warn"
    (warning,) = [m for m in result.warnings if "input_major_not_deprecated" in m]
    assert "reads commerce/orders.orders_fact v1, which its producer deprecated" in warning
    assert "(12 days left). Producer's note: read orders_fact v2: amount is net." in warning


def test_the_consumer_gate_blocks_once_the_major_is_past_serve_until():
    result = evaluate(REPO_ROOT, entry(SALES), NO_TESTS, facts=_deprecated_input_facts(-1))
    assert result.verdict == "block"
    (blocking,) = result.blocking
    assert "input_major_still_served" in blocking
    assert "which was served only until" in blocking and "producer's note: read orders_fact v2" in blocking


def _spec(deprecation: dict[str, Any], changelog: list[dict[str, Any]] | None = None) -> ProductEntry:
    spec = product("2.0.0", "notice", deprecations=[deprecation], changelog=changelog or [])
    return ProductEntry(spec, Path("notice.yaml"), "notice.yaml")


def test_a_deprecation_gives_at_least_30_days_notice():
    short = _spec({"major": 1, "serve_until": "2026-03-10", "announced": "2026-03-01"})
    result = evaluate(REPO_ROOT, short, NO_TESTS)
    assert any("deprecation_gives_notice" in m and "less than 30 days' notice" in m for m in result.blocking)

    # the announcement defaults to the date of the next major's first changelog entry
    dated = _spec(
        {"major": 1, "serve_until": "2026-03-10"},
        [{"version": "2.0.0", "date": "2026-02-01", "changes": ["amount is net"], "breaking": True}],
    )
    assert product_facts(dated.spec)["deprecations"][0]["notice_days"] == 37
    assert not [m for m in evaluate(REPO_ROOT, dated, NO_TESTS).messages if "deprecation_" in m]

    unknown = _spec({"major": 1, "serve_until": "2026-03-10"})
    assert any("deprecation_announced" in m for m in evaluate(REPO_ROOT, unknown, NO_TESTS).warnings)


def test_force_drop_is_in_the_json_schema():
    schema = DataProduct.model_json_schema(by_alias=True)
    fields = schema["$defs"]["Deprecation"]["properties"]
    assert {"announced", "force_drop"} <= set(fields)


def _past(name: str, force_drop: bool = False) -> DataProduct:
    return product(
        "2.0.0", name, deprecations=[{"major": 1, "serve_until": "2020-01-31", "force_drop": force_drop}]
    )


def _v1_exists(warehouse: Warehouse, name: str) -> bool:
    conn = warehouse.connect()
    with transaction(conn) as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (f"pcons__{name}__v1",))
        found = cur.fetchone() is not None
    conn.close()
    return found


def test_publish_keeps_a_major_a_subscriber_reads_unless_force_drop(db: Warehouse):
    name = "subscribed"
    ship(db, product("1.0.0", name))
    admin = db.connect()
    store.subscribe(admin, "revenue_dashboard", "pcons", name, "daily", 1, "bi@example.com")
    admin.close()
    ship(db, _past(name))  # past serve_until, but the dashboard still reads v1
    assert _v1_exists(db, name)
    ship(db, _past(name, force_drop=True))
    assert not _v1_exists(db, name)


def test_publish_keeps_a_major_with_measured_reads_and_tells_why(db: Warehouse):
    name = "measured"
    ship(db, product("1.0.0", name))
    admin = db.connect()
    usage.enable_logging(admin)
    _wait_for_log_prefix(db)
    usage.collect(admin)
    read(f"pcons/{name}", "daily", 1, connection=login(db, SCIENTIST).connect(), as_frame=False)
    time.sleep(0.3)
    usage.collect(admin)

    from test_access import build

    from generator.platform.publish import publish

    spec = _past(name)
    with transaction(admin) as cur:
        build(cur, spec)
    result = publish(admin, spec)
    assert result.retired == ()
    assert result.kept and f"is still read by: role {SCIENTIST} (1 reads" in result.kept[0]
    assert result.as_dict()["kept"] == list(result.kept)
    admin.close()
    assert _v1_exists(db, name)


def test_card_and_search_show_usage_and_deprecations(db: Warehouse):
    ship(db, product("1.0.0", "popular"))
    ship(db, product("1.0.0", "quiet"))
    ship(db, product("2.0.0", "popular", deprecations=[{"major": 1, "serve_until": "2999-01-31", "note": "use v2"}]))
    admin = db.connect()
    usage.enable_logging(admin)
    _wait_for_log_prefix(db)
    usage.collect(admin)
    analyst = login(db, ANALYST).connect()
    for _ in range(2):
        read("pcons/popular", "daily", connection=analyst, as_frame=False)
    analyst.close()
    time.sleep(0.3)
    usage.collect(admin)

    hits = search(admin, "test product", sort="usage")
    assert [h.product for h in hits][:2] == ["popular", "quiet"]
    assert hits[0].reads == 2 and hits[0].deprecated == ("v1 until 2999-01-31",)
    by_relevance = search(admin, "test product")  # equal relevance: the most used first
    assert by_relevance[0].product == "popular"

    text = format_card(load_card(admin, "pcons", "popular"))
    assert "2 reads by 1 role(s)" in text and f"{ANALYST}" in text
    assert "v1 until 2999-01-31: use v2" in text
    admin.close()


def test_the_gate_measures_that_an_input_pins_a_deprecated_major(db: Warehouse):
    from test_access import build, spec_dict

    from generator.governance.run_facts import measure

    ship(db, product("1.0.0", "upstream"))
    until = dt.date.today() + dt.timedelta(days=20)
    deprecation = {"major": 1, "serve_until": until.isoformat(), "note": "use v2"}
    ship(db, product("2.0.0", "upstream", deprecations=[deprecation]))
    document = spec_dict({"roles": []}, "pdown", "downstream")
    document["inputs"] = {"products": [{"domain": "pcons", "product": "upstream", "output": "daily", "major": 1}]}
    consumer = DataProduct.model_validate(document)
    admin = db.connect()
    with transaction(admin) as cur:
        build(cur, consumer)
    (measured,) = measure(admin, consumer).inputs
    admin.close()
    assert (measured["deprecated"], measured["serve_until"], measured["days_left"], measured["note"]) == (
        True, until.isoformat(), 20, "use v2"
    )


def test_the_report_shows_usage_and_deprecations(db: Warehouse, tmp_path: Path):
    from generator.report.mesh_report import build_report

    ship(db, product("1.0.0", "reported"))
    ship(db, product("2.0.0", "reported", deprecations=[{"major": 1, "serve_until": "2999-01-31", "note": "use v2"}]))
    admin = db.connect()
    admin.autocommit = True
    with admin.cursor() as cur:  # as `usage collect` records a read
        cur.execute(
            """INSERT INTO datamesh_catalog.view_reads (role, domain, product, major, output, at, source, event_key)
               VALUES (%s, 'pcons', 'reported', 1, 'daily', now(), 'server_log', 'test:1')""",
            (ANALYST,),
        )
    html = build_report(admin, tmp_path, tmp_path / "report.html").read_text()
    admin.close()
    assert f"1 reads by 1 role(s): {ANALYST} 1" in html
    assert "v1 until 2999-01-31</span> use v2" in html
