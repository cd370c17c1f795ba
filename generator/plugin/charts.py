"""Freshness against the SLA over time, as an SVG layout (markup in templates/charts.html.j2).

The data's age grows from each successful publish until the next one resets it: a saw-tooth over
the run history, ending at the age now, with the SLA's freshness window as a dashed line. A tooth
above the line is a stretch when the product was stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from generator.catalog.card import RunInfo

WIDTH, HEIGHT, PAD_LEFT, PAD = 560, 160, 44, 14


@dataclass(frozen=True)
class FreshnessChart:
    width: int
    height: int
    points: str  # the polyline's "x,y x,y ..."
    stale_points: list[tuple[float, float, str]]  # the peaks above the SLA, with a tooltip
    sla_y: float
    sla_hours: float
    y_max_hours: float
    first: str  # the x axis' ends, as dates
    last: str
    left: int
    right: int
    bottom: int


def freshness_layout(runs: list[RunInfo], sla_hours: float, now: datetime) -> FreshnessChart | None:
    """`runs` newest first (as the catalog gives them); None before the first successful publish."""
    published = sorted(r.ended_at for r in runs if r.outcome == "success")
    if not published:
        return None
    # (time, age in hours) at each corner of the saw-tooth: just before a publish, and just after.
    corners: list[tuple[datetime, float]] = [(published[0], 0.0)]
    for before, after in pairwise(published):
        corners += [(after, (after - before).total_seconds() / 3600), (after, 0.0)]
    corners.append((now, max(0.0, (now - published[-1]).total_seconds() / 3600)))
    y_max = max(sla_hours * 1.25, *(age for _, age in corners)) or 1.0
    start, span = published[0], max((now - published[0]).total_seconds(), 1.0)
    right, bottom = WIDTH - PAD, HEIGHT - PAD - 10

    def x(at: datetime) -> float:
        return PAD_LEFT + (at - start).total_seconds() / span * (right - PAD_LEFT)

    def y(hours: float) -> float:
        return bottom - hours / y_max * (bottom - PAD)

    return FreshnessChart(
        width=WIDTH,
        height=HEIGHT,
        points=" ".join(f"{x(t):.1f},{y(a):.1f}" for t, a in corners),
        stale_points=[
            (x(t), y(a), f"{a:.1f} h old at {t:%Y-%m-%d %H:%M} (SLA {sla_hours:g} h)")
            for t, a in corners
            if a > sla_hours
        ],
        sla_y=y(sla_hours),
        sla_hours=sla_hours,
        y_max_hours=y_max,
        first=f"{published[0]:%Y-%m-%d %H:%M}",
        last=f"{now:%Y-%m-%d %H:%M}",
        left=PAD_LEFT,
        right=right,
        bottom=bottom,
    )
