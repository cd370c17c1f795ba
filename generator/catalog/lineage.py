"""Lineage from the catalog: who reads what, as trees, as Mermaid or Graphviz, and as impact.

Two graphs over the same catalog rows: products (an edge per input product, labelled with the
outputs read) and outputs (an edge per output another product's output is built from). External
subscribers hang off the product or output they read. A diamond (two paths to one product) shows
the product once per path in a tree, expanded once; impact lists it once.
"""

from __future__ import annotations

import json
import unicodedata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg2.extensions

from generator.errors import NotFound, UserError
from generator.layout import CATALOG_SCHEMA
from generator.spec.model import DataProduct

Level = Literal["product", "output"]
SUBSCRIBER = "subscriber:"  # node id prefix of consumers outside the mesh


@dataclass
class Graph:
    """Nodes by id ('domain/product', 'domain/product.output' or 'subscriber:<name>')."""

    labels: dict[str, str] = field(default_factory=dict)
    down: dict[str, set[str]] = field(default_factory=dict)  # node -> its consumers
    up: dict[str, set[str]] = field(default_factory=dict)  # node -> what it reads
    edge_labels: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # Output level only: the major version of the producer each edge's consumer reads ...
    edge_majors: dict[tuple[str, str], int] = field(default_factory=dict)
    # ... and the major each product ('domain/product') publishes now.
    majors: dict[str, int] = field(default_factory=dict)

    def add_node(self, node: str, label: str | None = None) -> None:
        self.labels.setdefault(node, label or node)
        self.down.setdefault(node, set())
        self.up.setdefault(node, set())

    def add_edge(self, producer: str, consumer: str, label: str | None = None) -> None:
        self.add_node(producer)
        self.add_node(consumer)
        self.down[producer].add(consumer)
        self.up[consumer].add(producer)
        labels = self.edge_labels.setdefault((producer, consumer), set())
        if label:
            labels.add(label)

    def edges(self) -> list[tuple[str, str]]:
        return sorted(self.edge_labels)

    def reachable(self, start: str, direction: Literal["up", "down"]) -> set[str]:
        step = self.up if direction == "up" else self.down
        seen, todo = {start}, [start]
        while todo:
            for nxt in step.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def subgraph(self, nodes: set[str]) -> Graph:
        sub = Graph()
        for node in sorted(nodes):
            sub.add_node(node, self.labels[node])
        for (a, b), labels in self.edge_labels.items():
            if a in nodes and b in nodes:
                sub.add_edge(a, b)
                sub.edge_labels[(a, b)] |= labels
        return sub

    def around(self, node: str) -> Graph:
        """The node with everything upstream and downstream of it."""
        return self.subgraph(self.reachable(node, "up") | self.reachable(node, "down"))


def is_subscriber(node: str) -> bool:
    return node.startswith(SUBSCRIBER)


def load_graph(conn: psycopg2.extensions.connection, level: Level = "product") -> Graph:
    """The mesh's lineage as the catalog has it, at product or output level."""
    graph = Graph()
    with conn.cursor() as cur:
        cur.execute(f"SELECT domain, name, current_version FROM {CATALOG_SCHEMA}.products ORDER BY 1, 2")
        products = cur.fetchall()
        cur.execute(f"SELECT domain, product, name FROM {CATALOG_SCHEMA}.outputs ORDER BY 1, 2, position")
        outputs = cur.fetchall()
        if level == "product":
            cur.execute(
                f"""SELECT producer_domain, producer_product, consumer_domain, consumer_product,
                           producer_output FROM {CATALOG_SCHEMA}.lineage"""
            )
        else:
            # The product-level row says which major the consumer pinned (inputs.products[].major).
            cur.execute(
                f"""SELECT ol.producer_domain, ol.producer_product, ol.producer_output,
                           ol.consumer_domain, ol.consumer_product, ol.consumer_output, l.major
                    FROM {CATALOG_SCHEMA}.output_lineage ol
                    LEFT JOIN {CATALOG_SCHEMA}.lineage l USING (consumer_domain, consumer_product,
                                                                 producer_domain, producer_product,
                                                                 producer_output)"""
            )
        edges = cur.fetchall()
        cur.execute(f"SELECT consumer, domain, product, output, major FROM {CATALOG_SCHEMA}.subscriptions")
        subscriptions = cur.fetchall()
    conn.rollback()
    if level == "product":
        for domain, name, version in products:
            graph.add_node(f"{domain}/{name}", f"{domain}/{name} {version}")
        for pd, pp, cd, cp, output in edges:
            graph.add_edge(f"{pd}/{pp}", f"{cd}/{cp}", output)
        for consumer, domain, product, output, major in subscriptions:
            graph.add_node(SUBSCRIBER + consumer, f"{consumer} (subscriber)")
            graph.add_edge(f"{domain}/{product}", SUBSCRIBER + consumer, f"{output} v{major}")
    else:
        for domain, product, name in outputs:
            graph.add_node(f"{domain}/{product}.{name}")
        for pd, pp, po, cd, cp, co, major in edges:
            graph.add_edge(f"{pd}/{pp}.{po}", f"{cd}/{cp}.{co}")
            if major is not None:
                graph.edge_majors[(f"{pd}/{pp}.{po}", f"{cd}/{cp}.{co}")] = major
        for consumer, domain, product, output, major in subscriptions:
            graph.add_node(SUBSCRIBER + consumer, f"{consumer} (subscriber)")
            graph.add_edge(f"{domain}/{product}.{output}", SUBSCRIBER + consumer, f"v{major}")
            graph.edge_majors[(f"{domain}/{product}.{output}", SUBSCRIBER + consumer)] = major
    graph.majors = {f"{domain}/{name}": _major(version) for domain, name, version in products}
    return graph


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def parse_target(target: str) -> tuple[str, str, str | None]:
    """'domain/product[.output]' (or domain__product[.output]) -> (domain, product, output|None)."""
    text = target.replace("__", "/", 1) if "/" not in target else target
    domain, sep, rest = text.partition("/")
    product, _, output = rest.partition(".")
    if not sep or not domain or not product:
        raise UserError(
            f"{target!r}: name a product as <domain>/<product>, or an output as <domain>/<product>.<output>"
        )
    return domain, product, output or None


def node_of(graph: Graph, target: str) -> str:
    domain, product, output = parse_target(target)
    node = f"{domain}/{product}" + (f".{output}" if output else "")
    if node not in graph.labels:
        kind = "output" if output else "product"
        raise NotFound(f"no {kind} {node} in the catalog (has it been registered by a run?)")
    return node


# --- trees ----------------------------------------------------------------------------------------


def tree(graph: Graph, root: str, direction: Literal["up", "down"]) -> str:
    """An indented tree of everything upstream or downstream of `root`. A node reached again (a
    diamond) is shown but not expanded twice: '(see above)'."""
    step = graph.up if direction == "up" else graph.down
    lines = [graph.labels[root]]
    expanded = {root}

    def walk(node: str, prefix: str) -> None:
        children = sorted(step.get(node, ()))
        for i, child in enumerate(children):
            last = i == len(children) - 1
            edge = (node, child) if direction == "down" else (child, node)
            via = ", ".join(sorted(graph.edge_labels.get(edge, ())))
            text = graph.labels[child] + (f"  [{via}]" if via else "")
            repeat = child in expanded and step.get(child)
            lines.append(f"{prefix}{'└── ' if last else '├── '}{text}{'  (see above)' if repeat else ''}")
            if not repeat:
                expanded.add(child)
                walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    return "\n".join(lines)


# --- graphs for reports ---------------------------------------------------------------------------


def to_mermaid(graph: Graph, highlight: str | None = None) -> str:
    ids = {node: f"n{i}" for i, node in enumerate(sorted(graph.labels))}
    lines = ["flowchart LR"]
    for node, nid in ids.items():
        label = _mermaid_text(graph.labels[node])
        lines.append(f'    {nid}(["{label}"])' if is_subscriber(node) else f'    {nid}["{label}"]')
    for a, b in graph.edges():
        labels = ", ".join(sorted(graph.edge_labels[(a, b)]))
        arrow = f' -- "{_mermaid_text(labels)}" -->' if labels else " -->"
        lines.append(f"    {ids[a]}{arrow} {ids[b]}")
    if highlight in ids:
        lines.append(f"    style {ids[highlight]} stroke-width:3px")
    return "\n".join(lines) + "\n"


# Inside a quoted Mermaid label these would end the label, start an entity code, become HTML or
# a Markdown string: each is written as Mermaid's entity code (#quot; and the like). '#' first, so
# a name that already holds "#quot;" keeps it as text.
_MERMAID_CODES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: on one line, with its special characters as entity codes."""
    text = " ".join(_printable(line) for line in text.splitlines())
    for char, code in _MERMAID_CODES.items():
        text = text.replace(char, code)
    return text


def _printable(text: str) -> str:
    # Control characters (tabs, escapes) have no place in a label and some break the syntax.
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


def to_graphviz(graph: Graph, highlight: str | None = None) -> str:
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    for node in sorted(graph.labels):
        attrs = [f"label={_dot(graph.labels[node])}"]
        if is_subscriber(node):
            attrs.append("shape=ellipse")
        if node == highlight:
            attrs.append("penwidth=3")
        lines.append(f"  {_dot(node)} [{', '.join(attrs)}];")
    for a, b in graph.edges():
        labels = ", ".join(sorted(graph.edge_labels[(a, b)]))
        attr = f" [label={_dot(labels)}]" if labels else ""
        lines.append(f"  {_dot(a)} -> {_dot(b)}{attr};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot(text: str) -> str:
    """A DOT quoted string. DOT files are UTF-8, so "é" stays "é" (json.dumps would write a literal
    \\u00e9); quotes and backslashes are escaped, line breaks become DOT's centred-line \\n."""
    lines = [_printable(line).replace("\\", "\\\\").replace('"', '\\"') for line in text.splitlines()]
    return '"' + "\\n".join(lines) + '"'


# --- impact ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Impacted:
    kind: Literal["product", "subscriber"]
    name: str  # domain/product, or the subscriber's name
    depth: int  # 1 = reads the output directly
    path: tuple[str, ...]  # the output nodes from the changed one to this consumer


@dataclass(frozen=True)
class ImpactReport:
    output: str  # domain/product.output
    major: int  # the major version the breaking change is to
    hits: list[Impacted]  # nearest first
    # Readers of the output pinned to another major (inputs.products[].major, a subscription's
    # major): a change to `major` does not reach them. Major -> names, sorted.
    other_majors: dict[int, list[str]] = field(default_factory=dict)


def impact(
    conn: psycopg2.extensions.connection, domain: str, product: str, output: str, major: int | None = None
) -> list[Impacted]:
    """Every consumer a breaking change to `domain/product.output` at major `major` (default: the
    one it publishes now) would hit, nearest first: the products built from it (directly or
    through other outputs) and the subscribers of any of them. Each consumer once, at its shortest
    path. A consumer pinned to another major is not hit."""
    return impact_report(conn, domain, product, output, major).hits


def impact_report(
    conn: psycopg2.extensions.connection, domain: str, product: str, output: str, major: int | None = None
) -> ImpactReport:
    """`impact`, with the major it is about and who reads the output at other majors."""
    graph = load_graph(conn, "output")
    start = f"{domain}/{product}.{output}"
    if start not in graph.labels:
        raise NotFound(f"no output {start} in the catalog (has it been registered by a run?)")
    # Who reads the output, at which major (an edge without a known major counts as hit).
    pinned = {n: graph.edge_majors[(start, n)] for n in graph.down[start] if (start, n) in graph.edge_majors}
    current = graph.majors[f"{domain}/{product}"]
    major = current if major is None else major
    served = _served_majors(conn, domain, product)
    if major not in served | set(pinned.values()):
        raise UserError(
            f"impact: {domain}/{product} publishes major version(s) "
            f"{', '.join(f'v{m}' for m in sorted(served))} (v{current} the current one), not v{major}"
        )

    def reads_what_changes(producer: str, consumer: str) -> bool:
        # The changed output at `major`; downstream of it, what each product publishes now (an
        # older major of an intermediate product is a frozen snapshot the change does not reach).
        wanted = major if producer == start else graph.majors.get(producer.split(".", 1)[0])
        return graph.edge_majors.get((producer, consumer), wanted) == wanted

    found: dict[str, Impacted] = {}
    paths = {start: (start,)}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.down.get(node, ())):
            if nxt in paths or not reads_what_changes(node, nxt):
                continue
            paths[nxt] = (*paths[node], nxt)
            if is_subscriber(nxt):
                name, kind = nxt.removeprefix(SUBSCRIBER), "subscriber"
            else:
                name, kind = nxt.split(".", 1)[0], "product"
                queue.append(nxt)
            if name != f"{domain}/{product}" and name not in found:
                found[name] = Impacted(kind, name, len(paths[nxt]) - 1, paths[nxt])  # type: ignore[arg-type]
    others: dict[int, set[str]] = {}
    for node, read in pinned.items():
        name = node.removeprefix(SUBSCRIBER) if is_subscriber(node) else node.split(".", 1)[0]
        if read != major and name not in found:
            others.setdefault(read, set()).add(name)
    return ImpactReport(
        start,
        major,
        sorted(found.values(), key=lambda i: (i.depth, i.kind, i.name)),
        {m: sorted(names) for m, names in sorted(others.items())},
    )


def _served_majors(conn: psycopg2.extensions.connection, domain: str, product: str) -> set[int]:
    """The major versions the product's spec serves: its own and its `deprecations`."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT current_version, spec->'deprecations' FROM {CATALOG_SCHEMA}.products
                WHERE domain = %s AND name = %s""",
            (domain, product),
        )
        version, deprecations = cur.fetchone()
    conn.rollback()
    return {_major(version), *(int(d["major"]) for d in deprecations or [])}


def impact_message(conn: psycopg2.extensions.connection, domain: str, product: str, output: str) -> str:
    """One paragraph for the governance gate: who a breaking change to the output (at the major it
    publishes now) would hit, and who is not hit because they read another major."""
    return describe_impact(impact_report(conn, domain, product, output))


def describe_impact(report: ImpactReport) -> str:
    """'a breaking change to d/p.o hits 2 product(s): ...; 1 subscriber(s): ...'. When some readers
    are pinned to other majors, the major is named and so are they, as not hit."""
    products = [i.name for i in report.hits if i.kind == "product"]
    subscribers = [i.name for i in report.hits if i.kind == "subscriber"]
    parts = []
    if products:
        parts.append(f"{len(products)} product(s): {', '.join(products)}")
    if subscribers:
        parts.append(f"{len(subscribers)} subscriber(s): {', '.join(subscribers)}")
    subject = f"a breaking change to {report.output}"
    if report.other_majors:
        subject += f" v{report.major}"
    text = f"{subject} hits " + ("; ".join(parts) if parts else "no known consumer")
    if report.other_majors:
        text += "; not hit, as they read another major: " + "; ".join(
            f"v{m}: {', '.join(names)}" for m, names in report.other_majors.items()
        )
    return text


def format_impact(hits: Iterable[Impacted]) -> str:
    lines = []
    for hit in hits:
        via = " -> ".join(hit.path)
        lines.append(f"{'  ' * (hit.depth - 1)}{hit.kind:10} {hit.name}   (via {via})")
    return "\n".join(lines) or "no consumers: nothing reads this output"


# --- which output reads which input, from dbt's manifest ------------------------------------------


def output_inputs_from_manifest(
    target_dir: Path, spec: DataProduct
) -> dict[str, list[tuple[str, str, str]]] | None:
    """For each output, the input products' outputs its model reads (through other models of the
    project too), from the manifest.json in `target_dir` (the dbt run task's scratch target
    folder: the task passes the result on in its return value). None when there is none to read."""
    path = target_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    inputs = {
        (f"{i.domain}__{i.product}", i.output): (i.domain, i.product, i.output) for i in spec.inputs.products
    }
    sources = {
        sid: inputs.get((s.get("source_name"), s.get("name")))
        for sid, s in manifest.get("sources", {}).items()
    }
    nodes = manifest.get("nodes", {})

    def reads(node_id: str, seen: set[str]) -> set[tuple[str, str, str]]:
        found: set[tuple[str, str, str]] = set()
        for dep in nodes.get(node_id, {}).get("depends_on", {}).get("nodes", []):
            if dep in seen:
                continue
            seen.add(dep)
            if dep.startswith("source.") and sources.get(dep):
                found.add(sources[dep])  # type: ignore[arg-type]
            elif dep.startswith("model."):
                found |= reads(dep, seen)
        return found

    result = {}
    for output in spec.outputs:
        node_id = f"model.{spec.key}.{output.name}"
        if node_id not in nodes:
            return None  # not this spec's manifest: do not guess
        result[output.name] = sorted(reads(node_id, set()))
    return result
