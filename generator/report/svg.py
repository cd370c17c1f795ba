"""A lineage graph as an inline SVG: layered left to right, no JavaScript, no server, no network.

Layer = the longest path from a node without inputs, so every edge points right; nodes inside a
layer are sorted by name, so the same mesh always draws the same picture.
"""

from __future__ import annotations

from html import escape

from generator.catalog.lineage import Graph, is_subscriber

CHAR_WIDTH = 7.2  # px per character of the 12px sans-serif labels (a fair over-estimate)
NODE_HEIGHT = 30
ROW_GAP = 18
LAYER_GAP = 70
PAD = 10


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


def render_svg(graph: Graph, highlight: str | None = None, links: dict[str, str] | None = None) -> str:
    """The graph as an <svg> element. `links`: node -> href (e.g. a product's card in the page)."""
    if not graph.labels:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'
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

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{total_width}" '
        f'height="{total_height}" viewBox="0 0 {total_width} {total_height}" role="img">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#667"/></marker></defs>',
    ]
    for a, b in graph.edges():
        ax, ay = pos[a][0] + width_of[a], pos[a][1] + NODE_HEIGHT / 2
        bx, by = pos[b][0], pos[b][1] + NODE_HEIGHT / 2
        mid = (ax + bx) / 2
        title = escape(", ".join(sorted(graph.edge_labels[(a, b)])) or f"{a} -> {b}")
        parts.append(
            f'<path d="M{ax:.0f},{ay:.0f} C{mid:.0f},{ay:.0f} {mid:.0f},{by:.0f} {bx:.0f},{by:.0f}" '
            f'fill="none" stroke="#889" stroke-width="1.4" marker-end="url(#arrow)">'
            f"<title>{title}</title></path>"
        )
    for node, (nx, ny) in pos.items():
        kind = "subscriber" if is_subscriber(node) else "product"
        css = f"node {kind}" + (" focus" if node == highlight else "")
        radius = NODE_HEIGHT / 2 if kind == "subscriber" else 4
        box = (
            f'<g class="{css}"><rect x="{nx:.0f}" y="{ny:.0f}" '
            f'width="{width_of[node]}" height="{NODE_HEIGHT}" '
            f'rx="{radius:.0f}"/><text x="{nx + 10:.0f}" y="{ny + NODE_HEIGHT / 2 + 4:.0f}">'
            f"{escape(graph.labels[node])}</text></g>"
        )
        if node in links:
            box = f'<a href="{escape(links[node])}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return "\n".join(parts)


def sparkline_svg(values: list[float], width: int = 120, height: int = 28) -> str:
    """Quality scores 0..100, oldest first, as a small line; a dash when there are none."""
    if not values:
        return '<span class="muted">no scores yet</span>'
    pad = 3  # room for the end dot
    step = (width - 2 * pad) / max(1, len(values) - 1)
    first_x = pad if len(values) > 1 else width - pad  # a single score: just the dot, at the end
    low = max(0.0, min(values) - 10)  # from a little under the lowest score to 100: changes show
    points = " ".join(
        f"{first_x + i * step:.1f},{height - pad - (v - low) / (100 - low or 1) * (height - 2 * pad):.1f}"
        for i, v in enumerate(values)
    )
    last_x, last_y = points.split()[-1].split(",")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{width}" height="{height}">'
        f'<polyline points="{points}" fill="none" stroke="#3a6ea5" stroke-width="1.5"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="#3a6ea5"/>'
        f"<title>{escape(', '.join(f'{v:.0f}' for v in values))}</title></svg>"
    )
