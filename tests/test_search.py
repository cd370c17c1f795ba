"""`search`: ranking and every filter, on real PostgreSQL full-text search."""

from __future__ import annotations

import pytest
from catalog_helpers import execute, make_spec, register_run

from generator.catalog import store
from generator.catalog.search import Filters, format_table, prefix_query, search
from generator.errors import UserError

pytestmark = pytest.mark.integration
pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn


@pytest.fixture
def mesh(conn):
    """Four products: one named for customers, one with a customers column only, two unrelated."""
    store.migrate(conn)
    specs = [
        make_spec("customers", "customer_profiles", tags=["crm"], classification="confidential"),
        make_spec(
            "sales",
            "orders",
            description="Orders placed in the web shop.",
            tags=["sales"],
            outputs=["orders"],
        ),
        make_spec("finance", "revenue", description="Revenue by day.", tags=["reporting", "sales"]),
        make_spec("marketing", "campaigns", description="Campaign spend.", classification="public"),
    ]
    scores = {"customer_profiles": 95, "orders": 70, "revenue": 88, "campaigns": None}
    for spec in specs:
        register_run(conn, spec, score=scores[spec.name])
    # orders gets a column about customers; revenue published 30 hours ago (its SLA is 24 h)
    execute(
        conn,
        "INSERT INTO datamesh_catalog.columns (domain, product, output, name, position, type) "
        "VALUES ('sales', 'orders', 'orders', 'customer_email', 3, 'text')",
    )
    execute(conn, "SELECT datamesh_catalog.refresh_search_document('sales', 'orders')")
    execute(
        conn,
        "UPDATE datamesh_catalog.runs SET ended_at = now() - interval '30 hours' WHERE product = 'revenue'",
    )
    return conn


def names(hits) -> list[str]:
    return [h.key for h in hits]


def test_a_name_match_ranks_above_a_column_match_and_words_match_as_prefixes(mesh):
    assert names(search(mesh, "customer")) == ["customers/customer_profiles", "sales/orders"]
    assert names(search(mesh, "cust emai")) == ["sales/orders"]  # every word, each as a prefix
    assert names(search(mesh, "web shop")) == ["sales/orders"]  # the description
    assert names(search(mesh, "reporting")) == ["finance/revenue"]  # a tag
    assert names(search(mesh, "nothing like this")) == []


def test_filters_domain_tag_classification_score_and_freshness(mesh):
    assert names(search(mesh, "", Filters(tag="sales"))) == ["finance/revenue", "sales/orders"]
    assert names(search(mesh, "", Filters(domain="marketing"))) == ["marketing/campaigns"]
    assert names(search(mesh, "", Filters(classification="public"))) == ["marketing/campaigns"]
    assert names(search(mesh, "", Filters(min_quality=85))) == [
        "customers/customer_profiles",
        "finance/revenue",
    ]
    assert names(search(mesh, "", Filters(freshness="stale"))) == ["finance/revenue"]
    assert "finance/revenue" not in names(search(mesh, "", Filters(freshness="fresh")))
    assert names(search(mesh, "customer", Filters(min_quality=90))) == ["customers/customer_profiles"]


def test_the_table_shows_owner_version_freshness_and_score(mesh):
    table = format_table(search(mesh, "revenue"))
    header, _, row = table.splitlines()
    assert header.split()[:4] == ["product", "version", "owner", "freshness"]
    assert row.split()[:6] == ["finance/revenue", "1.0.0", "finance_team", "STALE", "30.0h/24.0h", "88"]
    assert format_table([]) == "no products match"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"classification": "secret"}, "classification 'secret' is not one of public, internal"),
        ({"freshness": "old"}, "freshness must be one of fresh, stale"),
        ({"min_quality": 120}, "between 0 and 100"),
    ],
)
def test_bad_filters_say_what_is_allowed(filters, message):
    with pytest.raises(UserError, match=message):
        Filters(**filters)


def test_query_text_never_becomes_tsquery_syntax():
    assert prefix_query("customer's & !email | (x") == "customer:* & s:* & email:* & x:*"
    assert prefix_query("Café-Crème | !Zürich") == "Café:* & Crème:* & Zürich:*"
    assert prefix_query("  ---  ") is None


def test_accented_words_are_found_whatever_their_case(conn):
    store.migrate(conn)
    register_run(conn, make_spec("cafes", "menu", description="Café crème prices, ÉTÉ and winter."))
    register_run(conn, make_spec("shops", "stores", description="Every store in Zürich."))
    register_run(conn, make_spec("plain", "items", description="Nothing accented here."))

    assert names(search(conn, "café")) == ["cafes/menu"]
    assert names(search(conn, "CRÈ")) == ["cafes/menu"]  # a prefix, in another case
    assert names(search(conn, "été")) == ["cafes/menu"]
    assert names(search(conn, "zür")) == ["shops/stores"]
    assert names(search(conn, "cafe\u0301")) == ["cafes/menu"]  # e + combining accent, as some keyboards type it
    assert names(search(conn, "é")) == ["cafes/menu"]  # a one-letter prefix: not every product
    assert names(search(conn, "ü")) == []
    assert names(search(conn, "creme")) == []  # accents are not folded (as docs/catalog.md says)


def test_text_without_a_word_is_refused_and_filters_alone_still_list(mesh):
    with pytest.raises(UserError, match=r"'---' has no word to search for .* or only filters \(--domain"):
        search(mesh, "---")
    assert names(search(mesh, "  ", Filters(domain="marketing"))) == ["marketing/campaigns"]
    assert len(search(mesh, "")) == 4  # no text, no filter: the whole catalog, as `datamesh search` lists it
