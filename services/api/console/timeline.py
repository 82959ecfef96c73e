"""The Gantt chart of a run: one lane per step, one bar per attempt, retry backoffs and waits.

Pure: built from the run's events (type, time in ms, body as in the event log), so it shows
every attempt, not just the last one the steps table keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LABEL_W = 220
CHART_W = 900
LANE_H = 18
AXIS_H = 22

_CLOSE = {
    "StepSucceeded": "succeeded",
    "StepFailed": "failed",
    "StepRetryScheduled": "retry",
    "StepTimedOut": "timed out",
    "StepCancelled": "cancelled",
    "StepAwaitingReview": "review",
}
_TERMINAL = {"WorkflowCompleted", "WorkflowFailed", "WorkflowCancelled"}


@dataclass(slots=True)
class Bar:
    """One span of a step: ``run`` (an attempt on a processor), ``wait`` (sleep, approval,
    review), ``backoff`` (before a retry) or ``map`` (a map node's children running)."""

    kind: str
    attempt: int
    start: int
    end: int | None = None
    outcome: str = ""


@dataclass(slots=True)
class Lane:
    """Every bar of one step key, in time order."""

    step_key: str
    label: str
    bars: list[Bar] = field(default_factory=list)

    def open_bar(self) -> Bar | None:
        return self.bars[-1] if self.bars and self.bars[-1].end is None else None


@dataclass(frozen=True, slots=True)
class BarBox:
    """A bar in pixels, with its tooltip."""

    x: float
    y: float
    w: float
    kind: str
    outcome: str
    title: str


@dataclass(frozen=True, slots=True)
class TimelineView:
    """What the template draws."""

    labels: tuple[tuple[float, str], ...]
    bars: tuple[BarBox, ...]
    ticks: tuple[tuple[float, str], ...]
    width: int
    height: int
    span_ms: int


def lanes_from_events(
    events: Iterable[tuple[str, int, dict[str, Any]]], workflow_id: str
) -> list[Lane]:
    """Fold events into lanes (in order of each step's first event)."""
    lanes: dict[str, Lane] = {}
    cut = len(workflow_id) + 1

    def lane(key: str) -> Lane:
        found = lanes.get(key)
        if found is None:
            found = lanes[key] = Lane(key, key[cut:] if key.startswith(workflow_id) else key)
        return found

    def close(target: Lane, at: int, outcome: str) -> None:
        bar = target.open_bar()
        if bar is not None:
            bar.end, bar.outcome = max(at, bar.start), outcome

    for type_, at, body in events:
        key = body.get("step_key")
        attempt = int(body.get("attempt") or 0)
        if type_ in _TERMINAL:
            for each in lanes.values():
                close(each, at, "cancelled" if type_ == "WorkflowCancelled" else "ended")
            continue
        if not isinstance(key, str):
            continue
        target = lane(key)
        if type_ == "StepScheduled":
            close(target, at, "")
            kind = "run" if body.get("kind") == "task" else "wait"
            target.bars.append(Bar(kind, attempt, at))
        elif type_ == "MapExpanded":
            target.bars.append(Bar("map", attempt, at))
        elif type_ == "StepRetryDue":
            close(target, at, "due")
        elif type_ == "StepSkipped":
            target.bars.append(Bar("skipped", attempt, at, at, "skipped"))
        elif type_ in _CLOSE:
            close(target, at, _CLOSE[type_])
            if type_ == "StepRetryScheduled":
                due = int(body.get("due_at") or at)
                target.bars.append(Bar("backoff", attempt, at, due, "retry due"))
            elif type_ == "StepAwaitingReview":
                target.bars.append(Bar("wait", attempt, at))
    return list(lanes.values())


def _tick_label(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:g} s"
    return f"{ms / 60_000:.1f} min"


def view(lanes: list[Lane], now_ms: int) -> TimelineView:
    """Pixel positions of every bar; open bars run until ``now_ms``."""
    starts = [b.start for ln in lanes for b in ln.bars]
    if not starts:
        return TimelineView((), (), (), LABEL_W + CHART_W, AXIS_H, 0)
    t0 = min(starts)
    t1 = max([now_ms if b.end is None else b.end for ln in lanes for b in ln.bars] + [t0 + 1])
    span = max(t1 - t0, 1)
    scale = CHART_W / span
    labels: list[tuple[float, str]] = []
    boxes: list[BarBox] = []
    for i, ln in enumerate(lanes):
        y = AXIS_H + i * LANE_H
        labels.append((y + LANE_H - 5, ln.label))
        for b in ln.bars:
            end = now_ms if b.end is None else b.end
            x = LABEL_W + (b.start - t0) * scale
            w = max((end - b.start) * scale, 2.0)
            state = "running" if b.end is None else b.outcome or "done"
            title = f"{ln.label} #{b.attempt} {b.kind}: {end - b.start} ms, {state}"
            boxes.append(BarBox(round(x, 1), y + 3, round(w, 1), b.kind, b.outcome, title))
    ticks = tuple(
        (round(LABEL_W + CHART_W * k / 4, 1), _tick_label(span * k // 4)) for k in range(5)
    )
    height = AXIS_H + len(lanes) * LANE_H + 4
    return TimelineView(tuple(labels), tuple(boxes), ticks, LABEL_W + CHART_W + 40, height, span)
