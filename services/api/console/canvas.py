"""Large graphs and timelines as compact data for ``static/console.js`` to draw on a canvas.

Above ``CANVAS_ABOVE`` nodes (or lanes) the page carries the layout as JSON in a
``<script type="application/json">`` (no extra round trip) instead of one SVG element per node,
path and bar: Chromium parsing and laying out thousands of SVG elements was most of a
1,000-step page's time (ADR 0085). Without JavaScript the per-level summary stands in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from markupsafe import Markup

from kflow.api.console import dag, timeline

CANVAS_ABOVE = 300
"""Graphs with more nodes (timelines with more lanes) than this are drawn on a canvas."""


@dataclass(frozen=True, slots=True)
class LevelSummary:
    """One DAG depth: how many steps, by status (most common first)."""

    level: int
    total: int
    statuses: tuple[tuple[str, int], ...]


def levels(layout: dag.DagLayout) -> tuple[LevelSummary, ...]:
    """Per-level counts of a layout (its columns are the planner's Kahn levels)."""
    by_level: dict[int, Counter[str]] = {}
    for n in layout.nodes:
        by_level.setdefault(n.level, Counter())[n.status] += 1
    return tuple(
        LevelSummary(lv, sum(c.values()), tuple(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))))
        for lv, c in sorted(by_level.items())
    )


def _script(element_id: str, data: dict[str, Any]) -> Markup:
    # "<" escaped so no value can close the script element
    text = orjson.dumps(data).decode().replace("<", "\\u003c")
    return Markup(f'<script type="application/json" id="{element_id}">{text}</script>')


def dag_data(layout: dag.DagLayout) -> Markup:
    """Nodes as ``[id, x, y, status, detail]``, edges as ``[source, target, greyed]`` indexes."""
    index = {n.node_id: i for i, n in enumerate(layout.nodes)}
    return _script(
        "dag-data",
        {
            "w": layout.width, "h": layout.height, "nw": dag.NODE_W, "nh": dag.NODE_H,
            "nodes": [[n.node_id, n.x, n.y, n.status, n.detail] for n in layout.nodes],
            "edges": [[index[e.source], index[e.target], int(e.greyed)] for e in layout.edges],
        },
    )  # fmt: skip


def timeline_data(view: timeline.TimelineView) -> Markup:
    """Lanes as ``[y, label]``, bars as ``[x, y, w, kind, outcome, title]``, time ticks."""
    return _script(
        "timeline-data",
        {
            "w": view.width, "h": view.height, "lane_h": timeline.LANE_H,
            "ticks": view.ticks, "lanes": view.labels,
            "bars": [[b.x, b.y, b.w, b.kind, b.outcome, b.title] for b in view.bars],
        },
    )  # fmt: skip
