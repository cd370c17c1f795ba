"""Lineage and impact on a mesh with a diamond (two paths from a/src to d/sink), for real in PostgreSQL.

a/src.main ──> b/left.main ──┐
     │                       ├──> d/sink.main ──> "Finance "board" deck" (subscriber)
     └───> c/right.main ─────┘
a/src.other ──> e/side.main          b/left.extra reads nothing
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalog_helpers import make_spec, register_run

from generator import catalog
from generator.lineage import (
    impact,
    impact_message,
    load_graph,
    output_inputs_from_manifest,
    to_graphviz,
    to_mermaid,
    tree,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["catalog_db"]  # the fixtures empty_db and conn

DECK = 'Finance "board" deck'


@pytest.fixture
def diamond(conn):
    catalog.migrate(conn)
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
    catalog.subscribe(conn, DECK, "d", "sink", "main")
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
    with pytest.raises(catalog.UserError, match=r"no output a/src.nope in the catalog"):
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
    assert output_inputs_from_manifest(tmp_path, spec) == {
        "main": [("b", "left", "main")],
        "agg": [("b", "left", "main"), ("c", "right", "main")],
    }
    assert output_inputs_from_manifest(tmp_path / "missing", spec) is None
