"""Workflow durations, retries and the in-flight gauge, observed once a batch commits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from kflow.core.events import (
    Event,
    StepRetryScheduled,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
)
from kflow.core.state import WorkflowState
from kflow.core.views import awaiting_progress_since
from kflow.observability.metrics import (
    OLDEST_PROGRESS,
    STEP_RETRIES,
    WORKFLOW_DURATION,
    WORKFLOWS_IN_FLIGHT,
)

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


class ProgressAges:
    """Since when each owned running workflow has waited for progress (committed states).

    Updated with the states of each committed batch and of restored partitions; read by the
    ``kflow_workflow_oldest_progress_age_seconds`` collector at scrape time, from another
    thread, with this orchestrator's clock.
    """

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._since: dict[str, tuple[str, int]] = {}
        self._names: set[str] = set()
        """Every workflow name seen here (a bounded set, like the metric's label values)."""
        self._lock = threading.Lock()
        OLDEST_PROGRESS.track(self)

    def update(self, states: Iterable[WorkflowState]) -> None:
        """Take the committed ``states`` (finished and waiting ones drop out)."""
        with self._lock:
            for state in states:
                self._names.add(state.name)
                since = awaiting_progress_since(state)
                if since is None:
                    self._since.pop(state.workflow_id, None)
                else:
                    self._since[state.workflow_id] = (state.name, since)

    def forget(self, workflow_ids: Iterable[str]) -> None:
        """Drop workflows this orchestrator no longer owns."""
        with self._lock:
            for workflow_id in workflow_ids:
                self._since.pop(workflow_id, None)

    def oldest_by_name(self) -> Mapping[str, int | None]:
        with self._lock:
            oldest: dict[str, int | None] = dict.fromkeys(self._names)
            for name, since in self._since.values():
                current = oldest[name]
                if current is None or since < current:
                    oldest[name] = since
        return oldest

    def now_ms(self) -> int:
        return self._clock_ms()
