"""Workflow durations, retries and the in-flight gauge, observed once a batch commits."""

from __future__ import annotations

from collections.abc import Iterable

from kflow.core.events import (
    Event,
    StepRetryScheduled,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
)
from kflow.core.state import WorkflowState
from kflow.observability.metrics import STEP_RETRIES, WORKFLOW_DURATION, WORKFLOWS_IN_FLIGHT

_OUTCOMES: dict[type[Event], str] = {
    WorkflowCompleted: "completed",
    WorkflowFailed: "failed",
    WorkflowCancelled: "cancelled",
}


class WorkflowMetrics:
    """Stages what the events of the open transaction say; ``publish`` after the commit.

    Durations use the events' own ``at`` times (start to terminal event), so a
    replayed or restored workflow reports the same figure.
    """

    def __init__(self) -> None:
        self._durations: list[tuple[str, str, float]] = []
        self._retries: list[str] = []

    def saw(self, events: Iterable[Event], state: WorkflowState | None) -> None:
        """Note the metric-worthy ``events`` of one decision; ``state`` is the state after them."""
        if state is None:
            return
        for event in events:
            outcome = _OUTCOMES.get(type(event))
            if outcome is not None:
                seconds = max(0, event.at - state.started_at) / 1000
                self._durations.append((state.name, outcome, seconds))
            elif isinstance(event, StepRetryScheduled):
                step = state.steps.get(event.step_key)
                node = state.graph.nodes.get(step.node_id) if step is not None else None
                self._retries.append(node.type if node is not None else "unknown")

    def publish(self, in_flight: int) -> None:
        """The batch committed: observe what it staged and set the in-flight gauge."""
        for name, outcome, seconds in self._durations:
            WORKFLOW_DURATION.labels(name, outcome).observe(seconds)
        for node_type in self._retries:
            STEP_RETRIES.labels(node_type).inc()
        WORKFLOWS_IN_FLIGHT.set(in_flight)
        self.discard()

    def discard(self) -> None:
        """The batch was aborted: it is processed again and staged again."""
        self._durations.clear()
        self._retries.clear()
