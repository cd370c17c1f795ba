"""A lineage graph and a quality trend as inline SVG: no JavaScript, no server, no network.

Python computes the layout only (positions, sizes, labels, links); the markup is in
templates/svg.html.j2, rendered with autoescape so a name holding `<`, `&` or quotes stays text.

Lineage layer = the longest path from a node without inputs, so every edge points right; nodes
inside a layer are sorted by name, so the same mesh always draws the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.catalog.lineage import Graph, is_subscriber
from generator.render.templating import environment

CHAR_WIDTH = 7.2  # px per character of the 12px sans-serif labels (a fair over-estimate)
NODE_HEIGHT = 30
ROW_GAP = 18
LAYER_GAP = 70
PAD = 10


@dataclass(frozen=True)
class Box:
    """One node: a rounded box with its label, linked when `href` is set."""

    x: int
    y: int
    width: int
    height: int
    radius: int
    css: str  # "node product" or "node subscriber", plus " focus" for the highlighted one
    label: str
    text_x: int
    text_y: int
    href: str | None


@dataclass(frozen=True)
class Edge:
    """A curve from the right side of one box to the left side of the next, with a tooltip."""

    from_x: int
    from_y: int
    mid_x: int
    to_x: int
    to_y: int
    title: str


@dataclass(frozen=True)
class LineageLayout:
    width: int
    height: int
    edges: list[Edge]
    boxes: list[Box]


@dataclass(frozen=True)
class SparklineLayout:
    width: int
    height: int
    points: list[tuple[float, float]]  # oldest first; the last one gets a dot
    title: str


def layers(graph: Graph) -> dict[str, int]:
    depth: dict[str, int] = {}

    def of(node: str, trail: frozenset[str]) -> int:
        if node not in depth:
            ups = [u for u in graph.up.get(node, ()) if u not in trail]  # a cycle cannot hang us
            depth[node] = 1 + max((of(u, trail | {node}) for u in ups), default=-1)
        return depth[node]

    for node in graph.labels:
        of(node, frozenset())
    return depth


def lineage_layout(
    graph: Graph, highlight: str | None = None, links: dict[str, str] | None = None
) -> LineageLayout | None:
    """Where each node and edge goes; None for an empty graph. `links`: node -> href."""
    if not graph.labels:
        return None
    links = links or {}
    depth = layers(graph)
    by_layer: dict[int, list[str]] = {}
    for node in sorted(graph.labels):
        by_layer.setdefault(depth[node], []).append(node)
    width_of = {n: int(len(graph.labels[n]) * CHAR_WIDTH) + 20 for n in graph.labels}
    x_of_layer, x = {}, PAD
    for layer in sorted(by_layer):
        x_of_layer[layer] = x
        x += max(width_of[n] for n in by_layer[layer]) + LAYER_GAP
    total_width = x - LAYER_GAP + PAD
    tallest = max(len(nodes) for nodes in by_layer.values())
    total_height = PAD * 2 + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP
    pos: dict[str, tuple[float, float]] = {}
    for layer, nodes in by_layer.items():
        column_height = len(nodes) * NODE_HEIGHT + (len(nodes) - 1) * ROW_GAP
        top = (total_height - column_height) / 2
        for i, node in enumerate(nodes):
            pos[node] = (x_of_layer[layer], top + i * (NODE_HEIGHT + ROW_GAP))

    edges = []
    for a, b in graph.edges():
        ax, ay = pos[a][0] + width_of[a], pos[a][1] + NODE_HEIGHT / 2
        bx, by = pos[b][0], pos[b][1] + NODE_HEIGHT / 2
        title = ", ".join(sorted(graph.edge_labels[(a, b)])) or f"{a} -> {b}"
        edges.append(Edge(round(ax), round(ay), round((ax + bx) / 2), round(bx), round(by), title))
    boxes = []
    for node, (nx, ny) in pos.items():
        kind = "subscriber" if is_subscriber(node) else "product"
        boxes.append(
            Box(
                x=round(nx),
                y=round(ny),
                width=width_of[node],
                height=NODE_HEIGHT,
                radius=round(NODE_HEIGHT / 2) if kind == "subscriber" else 4,
                css=f"node {kind}" + (" focus" if node == highlight else ""),
                label=graph.labels[node],
                text_x=round(nx + 10),
                text_y=round(ny + NODE_HEIGHT / 2 + 4),
                href=links.get(node),
            )
        )
    return LineageLayout(total_width, total_height, edges, boxes)


def sparkline_layout(values: list[float], width: int = 120, height: int = 28) -> SparklineLayout | None:
    """Quality scores 0..100, oldest first, as points of a small line; None when there are none."""
    if not values:
        return None
    pad = 3  # room for the end dot
    step = (width - 2 * pad) / max(1, len(values) - 1)
    first_x = pad if len(values) > 1 else width - pad  # a single score: just the dot, at the end
    low = max(0.0, min(values) - 10)  # from a little under the lowest score to 100: changes show
    points = [
        (first_x + i * step, height - pad - (v - low) / (100 - low or 1) * (height - 2 * pad))
        for i, v in enumerate(values)
    ]
    return SparklineLayout(width, height, points, ", ".join(f"{v:.0f}" for v in values))


def sparkline_svg(values: list[float], width: int = 120, height: int = 28) -> str:
    """The quality trend as an <svg> element on its own, or a muted "no scores yet" (the report
    pages call the template's macro themselves)."""
    macros = environment("html", "generator.report").get_template("svg.html.j2").module
    return str(macros.sparkline(sparkline_layout(values, width, height)))
