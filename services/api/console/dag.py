"""The DAG of one definition laid out for an SVG drawing, coloured by the run's step rows.

Pure and deterministic: columns are the core planner's Kahn levels (``kahn_levels``), the
order inside a column follows the mean row of each node's parents (one barycentre pass,
ties by the planner's order), so the same definition always gives the same picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kflow.core.definition import WorkflowDefinition
from kflow.core.planner import kahn_levels

NODE_W = 168
NODE_H = 40
GAP_X = 56
GAP_Y = 14
PAD = 12
PENDING = "pending"
"""Status of a node the run has not reached (no step row yet)."""


@dataclass(frozen=True, slots=True)
class StepState:
    """What the layout needs of one step row."""

    node_id: str
    index: int | None
    status: str


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node's status in one run; map nodes also count their items."""

    status: str
    items: int | None = None
    done: int | None = None


@dataclass(frozen=True, slots=True)
class NodeBox:
    """One node drawn at ``(x, y)`` (top-left), ``NODE_W`` by ``NODE_H``."""

    node_id: str
    type: str
    status: str
    x: int
    y: int
    label: str
    detail: str
    level: int = 0
    """The node's column: its depth in the DAG (Kahn level)."""


@dataclass(frozen=True, slots=True)
class EdgeLine:
    """A dependency ``source -> target`` as an SVG path."""

    source: str
    target: str
    path: str
    greyed: bool


@dataclass(frozen=True, slots=True)
class DagLayout:
    """Everything the template draws."""

    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgeLine, ...]
    width: int
    height: int


def node_states(definition: WorkflowDefinition, steps: Iterable[StepState]) -> dict[str, NodeState]:
    """Each node's status from the run's step rows (map children are counted, not drawn)."""
    own: dict[str, str] = {}
    items: dict[str, list[str]] = {}
    for s in steps:
        if s.index is None:
            own[s.node_id] = s.status
        else:
            items.setdefault(s.node_id, []).append(s.status)
    out: dict[str, NodeState] = {}
    for node in definition.nodes:
        status = own.get(node.id, PENDING)
        if node.for_each is not None:
            children = items.get(node.id, [])
            done = sum(1 for c in children if c == "succeeded")
            out[node.id] = NodeState(status, len(children), done)
        else:
            out[node.id] = NodeState(status)
    return out


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _columns(definition: WorkflowDefinition) -> list[list[str]]:
    ids = [n.id for n in definition.nodes]
    deps = {n.id: n.depends_on for n in definition.nodes}
    levels, leftover = kahn_levels(ids, deps)
    columns = [list(level) for level in levels]
    if leftover:  # only for an invalid definition; still draw every node
        columns.append(sorted(leftover))
    row: dict[str, float] = {}
    for index, column in enumerate(columns):
        if index > 0:
            rank = {node_id: i for i, node_id in enumerate(column)}

            def centre(node_id: str, rank: dict[str, int] = rank) -> tuple[float, int]:
                parents = [row[d] for d in deps[node_id] if d in row]
                mean = sum(parents) / len(parents) if parents else float(rank[node_id])
                return mean, rank[node_id]

            column.sort(key=centre)
        for i, node_id in enumerate(column):
            row[node_id] = float(i)
    return columns


def layout(definition: WorkflowDefinition, states: dict[str, NodeState]) -> DagLayout:
    """Place every node and route every dependency (left to right, one column per level)."""
    columns = _columns(definition)
    by_id = {n.id: n for n in definition.nodes}
    tallest = max((len(c) for c in columns), default=0)
    step_y = NODE_H + GAP_Y
    where: dict[str, tuple[int, int]] = {}
    boxes: list[NodeBox] = []
    for col, column in enumerate(columns):
        x = PAD + col * (NODE_W + GAP_X)
        top = PAD + (tallest - len(column)) * step_y // 2
        for i, node_id in enumerate(column):
            y = top + i * step_y
            where[node_id] = (x, y)
            node = by_id[node_id]
            state = states.get(node_id, NodeState(PENDING))
            detail = f"{node.type} · {state.status}"
            if state.items is not None:
                detail = f"map {state.done}/{state.items} · {state.status}"
            boxes.append(
                NodeBox(node_id, node.type, state.status, x, y, _short(node_id), detail, col)
            )
    edges: list[EdgeLine] = []
    for node in definition.nodes:
        tx, ty = where[node.id]
        for dep in node.depends_on:
            if dep not in where:
                continue
            sx, sy = where[dep]
            x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H // 2, tx, ty + NODE_H // 2
            mid = (x1 + x2) // 2
            greyed = states.get(node.id, NodeState(PENDING)).status == "skipped"
            path = f"M{x1} {y1}C{mid} {y1} {mid} {y2} {x2} {y2}"
            edges.append(EdgeLine(dep, node.id, path, greyed))
    width = PAD * 2 + max(len(columns), 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(tallest, 1) * step_y - GAP_Y
    return DagLayout(tuple(boxes), tuple(edges), width, height)


def draw(definition: WorkflowDefinition, steps: Sequence[StepState]) -> DagLayout:
    """Layout of ``definition`` coloured by ``steps``."""
    return layout(definition, node_states(definition, steps))
