"""What adapters and read models need, derived from events without re-implementing rules.

* ``tasks_from_events``: the ``ExecuteStep`` tasks to send (one per task ``StepScheduled``).
* ``timers_for``: timers to arm after a batch (stale ones are ignored by ``decide``).
* ``apply_step_event`` / ``apply_workflow_event``: fold events into per-step rows and a
  per-workflow summary (the PostgreSQL/Redis projections use these), and
  ``step_view``/``summary`` build the same rows from a ``WorkflowState``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kflow.core.events import (
    Event,
    MapExpanded,
    StepAwaitingReview,
    StepCancelled,
    StepEvent,
    StepFailed,
    StepHeartbeatRecorded,
    StepRetryDue,
    StepRetryScheduled,
    StepScheduled,
    StepSkipped,
    StepSucceeded,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
)
from kflow.core.jsondoc import NULL, Json
from kflow.core.state import StepRecord, Timer, WorkflowState, is_terminal, step_timers


@dataclass(frozen=True, slots=True)
class Task:
    """One ``ExecuteStep`` for a node processor (fields as in docs/design/contracts.md)."""

    workflow_id: str
    step_key: str
    node_id: str
    node_type: str
    queue: str
    attempt: int
    input: Json
    timeout_ms: int | None
    heartbeat_timeout_ms: int | None
    idempotency_key: str
    scheduled_at: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)


def tasks_from_events(events: Iterable[Event]) -> list[Task]:
    """Tasks to dispatch, in event order (sleep/approval steps need no processor).

    Send them only after the events are committed; the idempotency key makes a
    re-sent task harmless."""
    return [
        Task(
            workflow_id=e.workflow_id,
            step_key=e.step_key,
            node_id=e.node_id,
            node_type=e.node_type,
            queue=e.queue,
            attempt=e.attempt,
            input=e.input,
            timeout_ms=e.timeout_ms,
            heartbeat_timeout_ms=e.heartbeat_timeout_ms,
            idempotency_key=e.idempotency_key,
            scheduled_at=e.at,
        )
        for e in events
        if isinstance(e, StepScheduled) and e.kind == "task"
    ]


def timers_for(state: WorkflowState, events: Iterable[Event]) -> list[Timer]:
    """Timers to arm after applying ``events`` to get ``state`` (sorted).

    Only steps these events touched are looked at; timers armed earlier that no longer
    match are ignored by ``decide`` when they fire, so nothing needs cancelling.
    """
    if is_terminal(state):
        return []
    keys = {e.step_key for e in events if isinstance(e, StepEvent)}
    timers: list[Timer] = []
    for key in keys:
        record = state.steps.get(key)
        if record is not None:
            timers.extend(step_timers(record))
    timers.sort()
    return timers


@dataclass(frozen=True, slots=True)
class StepView:
    """One row of the steps read model."""

    workflow_id: str
    step_key: str
    node_id: str
    index: int | None
    status: str
    attempt: int
    node_type: str | None = None
    queue: str | None = None
    input: Json = NULL
    output: Json = NULL
    error_class: str | None = None
    error_type: str | None = None
    message: str | None = None
    scheduled_at: int | None = None
    finished_at: int | None = None
    heartbeat_at: int | None = None
    seq: int = 0
    """Seq of the last event applied (projections apply only newer events)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)


def _node_of(key: str, workflow_id: str) -> tuple[str, int | None]:
    local = key[len(workflow_id) + 1 :]
    if local.endswith("]"):
        node, _, index = local[:-1].rpartition("[")
        return node, int(index)
    return local, None


def apply_step_event(view: StepView | None, event: StepEvent) -> StepView:
    """Fold one step event into the step's row (``None`` = no row yet)."""
    if view is None:
        node_id, index = _node_of(event.step_key, event.workflow_id)
        view = StepView(event.workflow_id, event.step_key, node_id, index, "ready", event.attempt)
    changes: dict[str, Any] = {"seq": event.seq, "attempt": event.attempt}
    if isinstance(event, StepScheduled):
        changes.update(
            status="running" if event.kind == "task" else "waiting",
            node_type=event.node_type,
            queue=event.queue,
            input=event.input,
            scheduled_at=event.at,
            error_class=None,
            error_type=None,
            message=None,
        )
    elif isinstance(event, MapExpanded):
        changes.update(status="running", scheduled_at=event.at)
    elif isinstance(event, StepSucceeded):
        changes.update(status="succeeded", output=event.output, finished_at=event.at)
    elif isinstance(event, StepRetryScheduled | StepFailed | StepAwaitingReview):
        status = {StepRetryScheduled: "backoff", StepFailed: "failed"}.get(type(event), "review")
        changes.update(
            status=status,
            error_class=event.error_class,
            error_type=event.error_type,
            message=event.message,
        )
        if isinstance(event, StepFailed):
            changes["finished_at"] = event.at
    elif isinstance(event, StepRetryDue):
        changes["status"] = "ready"
    elif isinstance(event, StepSkipped):
        changes.update(status="skipped", message=event.reason, finished_at=event.at)
    elif isinstance(event, StepCancelled):
        changes.update(status="cancelled", finished_at=event.at)
    elif isinstance(event, StepHeartbeatRecorded):
        changes["heartbeat_at"] = event.at
    return dataclasses.replace(view, **changes)


def step_view(state: WorkflowState, record: StepRecord) -> StepView:
    """The step row for one record of a state (same shape as the event fold)."""
    node = state.graph.nodes[record.node_id]
    return StepView(
        workflow_id=state.workflow_id,
        step_key=record.step_key,
        node_id=record.node_id,
        index=record.index,
        status=record.status,
        attempt=record.attempt,
        node_type=node.type,
        queue=node.task_queue,
        input=record.input,
        output=record.output,
        error_class=record.error_class,
        error_type=record.error_type,
        message=record.message,
        scheduled_at=record.scheduled_at,
        finished_at=record.finished_at,
        heartbeat_at=record.heartbeat_at,
        seq=state.seq,
    )


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """One row of the executions read model."""

    workflow_id: str
    name: str
    version: int
    status: str
    seq: int
    started_at: int
    finished_at: int | None = None
    reason: str = ""
    output: Json = NULL
    tenant: str | None = None
    actor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)


def apply_workflow_event(summary: WorkflowSummary | None, event: Event) -> WorkflowSummary | None:
    """Fold any event into the workflow row (step events only move ``seq``)."""
    if isinstance(event, WorkflowStarted):
        return WorkflowSummary(
            workflow_id=event.workflow_id,
            name=event.name,
            version=event.version,
            status="running",
            seq=event.seq,
            started_at=event.at,
            tenant=event.tenant,
            actor=event.actor,
        )
    if summary is None or event.seq == 0:
        return summary
    changes: dict[str, Any] = {"seq": event.seq}
    if isinstance(event, WorkflowPaused):
        changes.update(status="paused", reason=event.reason)
    elif isinstance(event, WorkflowResumed):
        changes.update(status="running", reason="")
    elif isinstance(event, WorkflowCompleted):
        changes.update(status="completed", output=event.output, finished_at=event.at)
    elif isinstance(event, WorkflowFailed | WorkflowCancelled):
        status = "failed" if isinstance(event, WorkflowFailed) else "cancelled"
        changes.update(status=status, reason=event.reason, finished_at=event.at)
    return dataclasses.replace(summary, **changes)


def summary(state: WorkflowState) -> WorkflowSummary:
    """The workflow row for a state (same shape as the event fold)."""
    return WorkflowSummary(
        workflow_id=state.workflow_id,
        name=state.name,
        version=state.version,
        status=state.status,
        seq=state.seq,
        started_at=state.started_at,
        finished_at=state.finished_at,
        reason=state.reason,
        output=state.output,
        tenant=state.tenant,
        actor=state.actor,
    )


def is_waiting(state: WorkflowState) -> bool:
    """Visibly waiting for a human or an operator: paused, a review, or an approval step."""
    if state.status == "paused" or state.reviews:
        return True
    return any(r.status == "waiting" and r.kind == "approval" for r in state.steps.values())
