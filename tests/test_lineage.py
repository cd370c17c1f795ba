"""Lineage and impact on a mesh with a diamond (two paths from a/src to d/sink), for real in PostgreSQL.

a/src.main ──> b/left.main ──┐
     │                       ├──> d/sink.main ──> "Finance "board" deck" (subscriber)
     └───> c/right.main ─────┘
a/src.other ──> e/side.main          b/left.extra reads nothing
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from catalog_helpers import make_spec, register_run
from click.testing import CliRunner

from generator.catalog import store
from generator.catalog.lineage import (
    impact,
    impact_message,
    load_graph,
    output_inputs_from_manifest,
    to_graphviz,
    to_mermaid,
    tree,
)
from generator.cli.main import cli

pytestmark = pytest.mark.integration
pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn

DECK = 'Finance "board" deck'


@pytest.fixture
def diamond(conn):
    store.migrate(conn)
    specs = [
        (make_spec("a", "src", outputs=["main", "other"]), None),
        (
            make_spec("b", "left", reads=[("a", "src", "main")], outputs=["main", "extra"]),
            {"main": [("a", "src", "main")], "extra": []},
        ),
        (make_spec("c", "right", reads=[("a", "src", "main")]), None),
        (make_spec("d", "sink", reads=[("b", "left", "main"), ("c", "right", "main")]), None),
        (make_spec("e", "side", reads=[("a", "src", "other")]), None),
    ]
    for spec, output_inputs in specs:
        register_run(conn, spec, output_inputs=output_inputs)
    store.subscribe(conn, DECK, "d", "sink", "main")
    return conn


def test_trees_show_both_paths_of_the_diamond_and_expand_the_shared_node_once(diamond):
    graph = load_graph(diamond)
    assert tree(graph, "a/src", "down").splitlines() == [
        "a/src 1.0.0",
        "├── b/left 1.0.0  [main]",
        "│   └── d/sink 1.0.0  [main]",
        f"│       └── {DECK} (subscriber)  [main v1]",
        "├── c/right 1.0.0  [main]",
        "│   └── d/sink 1.0.0  [main]  (see above)",
        "└── e/side 1.0.0  [other]",
    ]
    assert tree(graph, "d/sink", "up").splitlines() == [
        "d/sink 1.0.0",
        "├── b/left 1.0.0  [main]",
        "│   └── a/src 1.0.0  [main]",
        "└── c/right 1.0.0  [main]",
        "    └── a/src 1.0.0  [main]",
    ]


def test_impact_lists_each_consumer_once_at_its_shortest_path(diamond):
    hits = impact(diamond, "a", "src", "main")
    assert [(h.kind, h.name, h.depth) for h in hits] == [
        ("product", "b/left", 1),
        ("product", "c/right", 1),
        ("product", "d/sink", 2),
        ("subscriber", DECK, 3),
    ]
    assert hits[2].path == ("a/src.main", "b/left.main", "d/sink.main")
    # output level: a change to `other` reaches e/side only, and b/left.extra reads nothing upstream
    assert [h.name for h in impact(diamond, "a", "src", "other")] == ["e/side"]
    assert impact(diamond, "b", "left", "extra") == []
    assert impact_message(diamond, "a", "src", "main") == (
        f"a breaking change to a/src.main hits 3 product(s): b/left, c/right, d/sink; 1 subscriber(s): {DECK}"
    )
    with pytest.raises(store.UserError, match=r"no output a/src.nope in the catalog"):
        impact(diamond, "a", "src", "nope")


def test_graphs_for_the_report_in_mermaid_and_graphviz(diamond):
    graph = load_graph(diamond)
    around = graph.around("b/left")  # b/left, what it reads and who reads it: not c/right or e/side
    assert sorted(around.labels) == ["a/src", "b/left", "d/sink", "subscriber:" + DECK]
    mermaid = to_mermaid(graph, highlight="d/sink")
    assert mermaid.startswith("flowchart LR\n")
    assert '(["Finance #quot;board#quot; deck (subscriber)"])' in mermaid
    assert mermaid.count(" --> ") == 6
    dot = to_graphviz(graph)
    assert '"a/src" -> "b/left" [label="main"];' in dot
    assert '"d/sink" -> "subscriber:Finance \\"board\\" deck" [label="main v1"];' in dot
    output_graph = load_graph(diamond, "output")
    assert sorted(output_graph.down["a/src.main"]) == ["b/left.main", "c/right.main"]



MERMAID_LINE = re.compile(
    r'    n\d+\["[^"<>`\n]*"\]|    n\d+\(\["[^"<>`\n]*"\]\)'  # a node, a subscriber's rounded node
    r'|    n\d+( -- "[^"<>`\n]*")? --> n\d+|    style n\d+ .*'  # an edge; the highlight
)
DOT_STRING = r'"(?:[^"\\\n]|\\.)*"'  # a quoted DOT string: any escaped character, no bare quote
DOT_LINE = re.compile(rf"  {DOT_STRING}( -> {DOT_STRING})? \[[^\n]*\];|  {DOT_STRING} -> {DOT_STRING};")


def test_names_with_accents_markup_and_line_breaks_keep_both_graph_syntaxes_valid(diamond):
    odd = 'Café <b>board</b>\n# "deck" & `notes`'
    store.subscribe(diamond, odd, "d", "sink", "main")
    graph = load_graph(diamond)

    mermaid = to_mermaid(graph).splitlines()
    assert mermaid[0] == "flowchart LR"
    assert [line for line in mermaid[1:] if not MERMAID_LINE.fullmatch(line)] == []
    assert (
        '(["Café #lt;b#gt;board#lt;/b#gt; #35; #quot;deck#quot; #amp; #96;notes#96; (subscriber)"])'
        in "\n".join(mermaid)
    )

    dot = to_graphviz(graph)
    body = dot.splitlines()[3:-1]
    assert [line for line in body if not DOT_LINE.fullmatch(line)] == []
    assert 'label="Café <b>board</b>\\n# \\"deck\\" & `notes` (subscriber)"' in dot  # é as é
    assert "\\u00e9" not in dot

def test_which_output_reads_which_input_comes_from_dbt_manifest(tmp_path: Path):
    spec = make_spec(
        "d", "sink", reads=[("b", "left", "main"), ("c", "right", "main")], outputs=["main", "agg"]
    )
    manifest = {
        "sources": {
            "source.d__sink.b__left.main": {"source_name": "b__left", "name": "main"},
            "source.d__sink.c__right.main": {"source_name": "c__right", "name": "main"},
        },
        "nodes": {
            "model.d__sink.main": {"depends_on": {"nodes": ["source.d__sink.b__left.main"]}},
            # agg reads main (a model of this project) and c/right directly
            "model.d__sink.agg": {
                "depends_on": {"nodes": ["model.d__sink.main", "source.d__sink.c__right.main"]}
            },
        },
    }
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text(json.dumps(manifest))
    assert output_inputs_from_manifest(tmp_path / "target", spec) == {
        "main": [("b", "left", "main")],
        "agg": [("b", "left", "main"), ("c", "right", "main")],
    }
    assert output_inputs_from_manifest(tmp_path / "missing", spec) is None


def reads(domain: str, product: str, output: str, major: int) -> dict:
    return {"products": [{"domain": domain, "product": product, "output": output, "major": major}]}


@pytest.fixture
def two_majors(conn):
    """p/src serves v2 and, until its deprecation date, v1. Pinned to v1: c/old and the subscriber
    "v1 deck" (subscribed while v1 was current); to v2: c/new. d/after_old and d/after_new read
    c/old and c/new."""
    store.migrate(conn)
    register_run(conn, make_spec("p", "src"))
    store.subscribe(conn, "v1 deck", "p", "src", "main")
    register_run(
        conn, make_spec("p", "src", version="2.0.0", deprecations=[{"major": 1, "serve_until": "2999-01-01"}])
    )
    store.subscribe(conn, "v2 deck", "p", "src", "main")
    register_run(conn, make_spec("c", "old", inputs=reads("p", "src", "main", 1)))
    register_run(conn, make_spec("c", "new", inputs=reads("p", "src", "main", 2)))
    register_run(conn, make_spec("d", "after_old", inputs=reads("c", "old", "main", 1)))
    register_run(conn, make_spec("d", "after_new", inputs=reads("c", "new", "main", 1)))
    return conn


def test_impact_of_a_major_reaches_only_its_readers_and_names_the_others(two_majors):
    assert [(h.kind, h.name) for h in impact(two_majors, "p", "src", "main")] == [
        ("product", "c/new"),
        ("subscriber", "v2 deck"),
        ("product", "d/after_new"),
    ]
    assert impact_message(two_majors, "p", "src", "main") == (
        "a breaking change to p/src.main v2 hits 2 product(s): c/new, d/after_new; "
        "1 subscriber(s): v2 deck; not hit, as they read another major: v1: c/old, v1 deck"
    )
    # retiring v1 is a breaking change to v1: it hits the other side
    assert [h.name for h in impact(two_majors, "p", "src", "main", major=1)] == [
        "c/old",
        "v1 deck",
        "d/after_old",
    ]
    allowed = r"p/src publishes major version\(s\) v1, v2 \(v2 the current one\), not v3"
    with pytest.raises(store.UserError, match=allowed):
        impact(two_majors, "p", "src", "main", major=3)


def test_impact_through_the_cli_takes_a_major(two_majors, empty_db, repo_root, monkeypatch):
    monkeypatch.setenv("PGDATABASE", empty_db.dbname)
    said = CliRunner().invoke(cli, ["--root", str(repo_root), "impact", "p/src.main", "--major", "1"])
    assert said.exit_code == 0, said.output
    assert said.output.splitlines()[0] == (
        "a breaking change to p/src.main v1 hits 2 product(s): c/old, d/after_old; 1 subscriber(s): v1 deck; "
        "not hit, as they read another major: v2: c/new, v2 deck"
    )
