"""SVG markup of a DAG layout and a timeline, written directly (a 1,000-node run renders in
milliseconds here, where a template escaping every coordinate took a large part of a second)."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from kflow.api.console import dag, timeline
from kflow.api.console.render import status_class as _css

ARROWS_UP_TO = 300
"""Edges drawn with arrowheads up to this many (beyond, plain paths, still left to right)."""


def dag_svg(layout: dag.DagLayout, marker: str = "arrow", element_id: str = "dag") -> Markup:
    """The graph: dependency paths first, then one ``<g class="node st-…">`` per node."""
    out = [
        f'<svg class="dag" id="{element_id}" width="{layout.width}" height="{layout.height}"'
        f' viewBox="0 0 {layout.width} {layout.height}" role="img" aria-label="workflow graph">'
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6"'
        ' markerHeight="6" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"/></marker></defs>'
    ]
    # Arrowheads cost the browser a marker per path; a large graph reads left to right anyway.
    head = f' marker-end="url(#{marker})"' if len(layout.edges) <= ARROWS_UP_TO else ""
    for e in layout.edges:
        cls = "edge greyed" if e.greyed else "edge"
        out.append(f'<path d="{e.path}" class="{cls}"{head}/>')
    for n in layout.nodes:
        node_id, detail = escape(n.node_id), escape(n.detail)
        status = escape(n.status)
        out.append(
            f'<g class="node {_css(n.status)}" data-node="{node_id}" data-status="{status}"'
            f' transform="translate({n.x},{n.y})"><title>{node_id}: {detail}</title>'
            f'<rect width="{dag.NODE_W}" height="{dag.NODE_H}" rx="6"/>'
            f'<text x="8" y="16">{escape(n.label)}</text>'
            f'<text x="8" y="32" class="sub">{detail}</text></g>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def timeline_svg(view: timeline.TimelineView) -> Markup:
    """The Gantt chart: time ticks, one label per lane, one ``<rect>`` per bar."""
    out = [f'<svg class="timeline" id="timeline" width="{view.width}" height="{view.height}">']
    for x, label in view.ticks:
        out.append(
            f'<line x1="{x}" x2="{x}" y1="14" y2="{view.height}" class="tick"/>'
            f'<text x="{x}" y="12" class="ticklabel">{escape(label)}</text>'
        )
    for y, label in view.labels:
        out.append(f'<text x="4" y="{y}" class="lane">{escape(label)}</text>')
    for b in view.bars:
        outcome = escape(b.outcome.replace(" ", "-"))
        out.append(
            f'<rect x="{b.x}" y="{b.y}" width="{b.w}" height="12" class="bar bar-{b.kind}'
            f' out-{outcome}"><title>{escape(b.title)}</title></rect>'
        )
    out.append("</svg>")
    return Markup("".join(out))
