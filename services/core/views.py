"""What adapters and read models need, derived from events without re-implementing rules.

* ``tasks_from_events``: the ``ExecuteStep`` tasks to send (one per task ``StepScheduled``).
* ``timers_for``: timers to arm after a batch (stale ones are ignored by ``decide``).
* ``apply_step_event`` / ``apply_workflow_event``: fold events into per-step rows and a
  per-workflow summary (the PostgreSQL/Redis projections use these), and
  ``step_view``/``summary`` build the same rows from a ``WorkflowState``; both apply
  the rules of ``kflow.core.transitions``, the ones ``evolve`` applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from kflow.core.events import Event, StepEvent, StepScheduled, WorkflowStarted
from kflow.core.jsondoc import NULL, Json
from kflow.core.state import StepRecord, Timer, WorkflowState, is_terminal, step_timers
from kflow.core.transitions import (
    ATTEMPT_KINDS,
    ERROR_FIELDS,
    ROW_SHOWS,
    STARTED,
    WORKFLOW_RULES,
    replaced,
    step_changes,
)


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


_HIDDEN: dict[str, tuple[str, ...]] = {
    status: tuple(f for f in ERROR_FIELDS if f not in shown) for status, shown in ROW_SHOWS.items()
}
_NEW = StepRecord(step_key="", node_id="")


def apply_step_event(view: StepView | None, event: StepEvent) -> StepView:
    """Fold one step event into the step's row (``None`` = no row yet).

    The changes are the state fold's (``kflow.core.transitions``), restricted to the
    row's columns, so the row equals ``step_view`` of the folded state.
    """
    if view is None:
        node_id, index = _node_of(event.step_key, event.workflow_id)
        view = StepView(
            event.workflow_id, event.step_key, node_id, index, _NEW.status, _NEW.attempt
        )
    row = cast(dict[str, Any], step_changes(event))  # a fresh dict; non-row keys are ignored
    for name in _HIDDEN[row.get("status", view.status)]:
        row[name] = None
    row["seq"] = event.seq
    return replaced(view, row)


def step_view(state: WorkflowState, record: StepRecord) -> StepView:
    """The step row for one record of a state (what ``apply_step_event`` folds to).

    ``seq`` is the state's; a folded row has the seq of the step's own last event.
    """
    node = state.graph.nodes[record.node_id]
    scheduled = record.kind in ATTEMPT_KINDS
    shows = ROW_SHOWS[record.status]
    return StepView(
        workflow_id=state.workflow_id,
        step_key=record.step_key,
        node_id=record.node_id,
        index=record.index,
        status=record.status,
        attempt=record.attempt,
        node_type=node.type if scheduled else None,
        queue=node.task_queue if scheduled else None,
        input=record.input if scheduled else NULL,
        output=record.output,
        error_class=record.error_class if "error_class" in shows else None,
        error_type=record.error_type if "error_type" in shows else None,
        message=record.message if "message" in shows else None,
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
            status=STARTED,
            seq=event.seq,
            started_at=event.at,
            tenant=event.tenant,
            actor=event.actor,
        )
    if summary is None or event.seq == 0:
        return summary
    rule = WORKFLOW_RULES.get(type(event))
    changes = cast(dict[str, Any], rule(event)) if rule is not None else {}
    changes["seq"] = event.seq
    return replaced(summary, changes)


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


def awaiting_progress_since(state: WorkflowState) -> int | None:
    """Since when (ms, event time) ``state`` has waited for its next event, or None when it is
    not expected to move on its own (finished, paused, or waiting for a review or a signal).

    The latest of the start and every step's scheduled/finished/heartbeat time; a step
    waiting for its own timer (retry backoff, sleep) is not late before the timer is due, so
    its due time counts too. Only recorded times are read, so the answer is the same on
    every replay; the caller's clock turns it into an age (``now - since``).
    """
    if is_terminal(state) or is_waiting(state):
        return None
    latest = state.started_at
    for record in state.steps.values():
        for at in (record.scheduled_at, record.finished_at, record.heartbeat_at):
            if at is not None and at > latest:
                latest = at
        if record.status in ("backoff", "waiting") and record.due_at is not None:
            latest = max(latest, record.due_at)
    return latest
