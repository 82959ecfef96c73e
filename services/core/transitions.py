"""The one table of what each event does to its step and to its workflow (ADR 0014).

``STEP_RULES`` says, per step event type, which status the step moves to and which
fields of its ``StepRecord`` the event sets; ``WORKFLOW_RULES`` the same for the
workflow's status, reason, output and finish time. ``ROW_SHOWS`` says, per step status,
which error fields explain it. Both folds are derived from these tables:

* ``kflow.core.fold`` (``evolve``) applies the changes to the ``WorkflowState`` and then
  does the DAG bookkeeping (dependents becoming ready, map children) the rows do not have;
* ``kflow.core.views`` (``apply_step_event``/``apply_workflow_event``, the PostgreSQL and
  Redis projections' row fold) applies the same changes to a ``StepView`` /
  ``WorkflowSummary``, and ``step_view``/``summary`` read the same rows off a state.

A new event type is one entry here (and, if it moves the DAG, a follow-up in ``fold``).
Status names and meanings: ``kflow.core.state.StepStatus`` and ``WorkflowStatus``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, TypedDict, TypeVar, cast, get_args

from kflow.core.events import (
    Event,
    MapExpanded,
    StepAwaitingReview,
    StepCancelled,
    StepEvent,
    StepFailed,
    StepHeartbeatRecorded,
    StepKind,
    StepReopened,
    StepRetryDue,
    StepRetryScheduled,
    StepScheduled,
    StepSkipped,
    StepSucceeded,
    StepTimedOut,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowSignalled,
)
from kflow.core.jsondoc import NULL
from kflow.core.state import StepStatus, WorkflowStatus


class StepChanges(TypedDict, total=False):
    """The ``StepRecord`` fields one step event sets (absent = unchanged).

    ``node_type`` and ``queue`` are read-model columns only: the state has them in its
    graph, the row fold learns them from ``StepScheduled``.
    """

    status: StepStatus
    attempt: int
    kind: str | None
    input: Any
    output: Any
    error_class: str | None
    error_type: str | None
    message: str | None
    scheduled_at: int | None
    finished_at: int | None
    heartbeat_at: int | None
    timeout_ms: int | None
    heartbeat_timeout_ms: int | None
    due_at: int | None
    children: int | None
    node_type: str
    queue: str


class WorkflowChanges(TypedDict, total=False):
    """The workflow fields one workflow event sets (absent = unchanged)."""

    status: WorkflowStatus
    reason: str
    output: Any
    finished_at: int | None


STARTED: Final[WorkflowStatus] = "running"
"""The status ``WorkflowStarted`` gives a workflow (and ``WorkflowResumed`` gives back)."""

ATTEMPT_KINDS: Final[frozenset[str]] = frozenset(get_args(StepKind))
"""``StepRecord.kind`` values that ``StepScheduled`` sets: once a step has one, an attempt
was scheduled, and its row shows the attempt's ``node_type``, ``queue`` and ``input``."""

ERROR_FIELDS: Final[tuple[str, ...]] = ("error_class", "error_type", "message")

ROW_SHOWS: Final[Mapping[StepStatus, frozenset[str]]] = {
    "ready": frozenset(ERROR_FIELDS),  # after a retry came due: the error it retries
    "running": frozenset(),
    "waiting": frozenset(),
    "backoff": frozenset(ERROR_FIELDS),  # the transient error being retried
    "review": frozenset(ERROR_FIELDS),  # what the reviewer decides about
    "succeeded": frozenset(),
    "failed": frozenset(ERROR_FIELDS),  # why it failed for good
    "skipped": frozenset({"message"}),  # why it was skipped
    "cancelled": frozenset(),
}
"""Per step status, the error fields a read-model row shows: the error that explains the
status. The state keeps a step's last error; a row does not show an earlier attempt's
error once the next attempt runs or the step ends otherwise. A rule that moves a step to
a status sets the fields shown there, or moves it only from statuses that show them too
(``StepRetryDue``: backoff/review to ready); the property test in
tests/core/test_transitions.py checks it."""


# -- step events -------------------------------------------------------------------------


def _scheduled(e: StepScheduled) -> StepChanges:
    return {
        "status": "running" if e.kind == "task" else "waiting",
        "kind": e.kind,
        "input": e.input,
        "scheduled_at": e.at,
        "heartbeat_at": None,
        "timeout_ms": e.timeout_ms,
        "heartbeat_timeout_ms": e.heartbeat_timeout_ms,
        "due_at": e.due_at,
        "node_type": e.node_type,
        "queue": e.queue,
    }


def _expanded(e: MapExpanded) -> StepChanges:
    return {"status": "running", "kind": "map", "scheduled_at": e.at, "children": e.count}


def _succeeded(e: StepSucceeded) -> StepChanges:
    return {"status": "succeeded", "output": e.output, "finished_at": e.at}


def _retry_scheduled(e: StepRetryScheduled) -> StepChanges:
    return {
        "status": "backoff",
        "error_class": e.error_class,
        "error_type": e.error_type,
        "message": e.message,
        "due_at": e.due_at,
    }


def _retry_due(e: StepRetryDue) -> StepChanges:
    return {"status": "ready", "due_at": None}


def _failed(e: StepFailed) -> StepChanges:
    return {
        "status": "failed",
        "error_class": e.error_class,
        "error_type": e.error_type,
        "message": e.message,
        "finished_at": e.at,
    }


def _review(e: StepAwaitingReview) -> StepChanges:
    return {
        "status": "review",
        "error_class": e.error_class,
        "error_type": e.error_type,
        "message": e.message,
    }


def _timed_out(e: StepTimedOut) -> StepChanges:
    return {}  # the retry/failure event that follows carries the change


def _heartbeat(e: StepHeartbeatRecorded) -> StepChanges:
    return {"heartbeat_at": e.at}


def _skipped(e: StepSkipped) -> StepChanges:
    return {"status": "skipped", "finished_at": e.at, "message": e.reason}


def _cancelled(e: StepCancelled) -> StepChanges:
    return {"status": "cancelled", "finished_at": e.at}


def _reopened(e: StepReopened) -> StepChanges:
    return {
        "status": e.status,
        "error_class": None,
        "error_type": None,
        "message": None,
        "finished_at": None,
        "due_at": None,
    }


STEP_RULES: Final[Mapping[type[StepEvent], Callable[[Any], StepChanges]]] = {
    StepScheduled: _scheduled,
    MapExpanded: _expanded,
    StepSucceeded: _succeeded,
    StepRetryScheduled: _retry_scheduled,
    StepRetryDue: _retry_due,
    StepFailed: _failed,
    StepAwaitingReview: _review,
    StepTimedOut: _timed_out,
    StepHeartbeatRecorded: _heartbeat,
    StepSkipped: _skipped,
    StepCancelled: _cancelled,
    StepReopened: _reopened,
}


def step_changes(event: StepEvent) -> StepChanges:
    """What ``event`` sets on its step; every step event also sets the step's ``attempt``.

    A new dict on every call: callers may add to it.
    """
    rule = STEP_RULES.get(type(event))
    if rule is None:
        raise ValueError(f"no step rule for {type(event).__name__}")
    changes = rule(event)
    changes["attempt"] = event.attempt
    return changes


# -- workflow events -----------------------------------------------------------------------


def _wf_paused(e: WorkflowPaused) -> WorkflowChanges:
    return {"status": "paused", "reason": e.reason}


def _wf_resumed(e: WorkflowResumed) -> WorkflowChanges:
    return {"status": STARTED, "reason": ""}


def _wf_signalled(e: WorkflowSignalled) -> WorkflowChanges:
    return {}  # its effect follows as step events


def _wf_completed(e: WorkflowCompleted) -> WorkflowChanges:
    return {"status": "completed", "output": e.output, "finished_at": e.at}


def _wf_failed(e: WorkflowFailed) -> WorkflowChanges:
    return {"status": "failed", "reason": e.reason, "finished_at": e.at}


def _wf_cancelled(e: WorkflowCancelled) -> WorkflowChanges:
    return {"status": "cancelled", "reason": e.reason, "finished_at": e.at}


def _wf_retried(e: WorkflowRetried) -> WorkflowChanges:
    return {"status": STARTED, "reason": "", "output": NULL, "finished_at": None}


WORKFLOW_RULES: Final[Mapping[type[Event], Callable[[Any], WorkflowChanges]]] = {
    WorkflowPaused: _wf_paused,
    WorkflowResumed: _wf_resumed,
    WorkflowSignalled: _wf_signalled,
    WorkflowCompleted: _wf_completed,
    WorkflowFailed: _wf_failed,
    WorkflowCancelled: _wf_cancelled,
    WorkflowRetried: _wf_retried,
}
"""Workflow events after ``WorkflowStarted`` (which creates the workflow with ``STARTED``)."""


# -- applying changes ----------------------------------------------------------------------

_T = TypeVar("_T")
_FIELDS: dict[type[Any], tuple[str, ...]] = {}


def replaced(obj: _T, changes: Mapping[str, Any]) -> _T:
    """A copy of a frozen slotted dataclass with ``changes`` (keys it lacks are ignored).

    ``dataclasses.replace`` re-runs ``__init__``; this is about a third cheaper, and both
    folds run it once per event.
    """
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cast(Any, cls)))
    new = object.__new__(cls)
    put = object.__setattr__
    for name in names:
        put(new, name, changes[name] if name in changes else getattr(obj, name))
    return new
