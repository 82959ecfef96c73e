"""What ``decide`` emits and ``evolve`` folds: the workflow's event log.

Every event has ``workflow_id``, ``seq`` and ``at`` (ms). State-changing events have
a gapless per-workflow ``seq`` from 1. *Notices* (``WorkflowRejected``,
``DuplicateStartIgnored``, ``InputRejected``) answer an input without changing
state and carry ``seq = 0`` (see ADR 0011). Step events also carry ``step_key`` and
``attempt``; ``f"{step_key}#{attempt}"`` is the idempotency key processors use.

The first event produced for an accepted input carries ``cause``: the input as a
dict, minus fields the event itself already holds (see ``kflow.core.replay``),
so the log alone is enough to re-derive every event.

JSON documents (inputs, outputs, payloads, details) are ``Json`` values that keep the
text they were read as (ADR 0026); plain Python data given for one is wrapped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from kflow.core.jsondoc import NULL, Json, coerce_documents, document_fields

ErrorClassName = Literal["transient", "permanent", "needs_review"]
StepKind = Literal["task", "sleep", "approval"]
TimeoutKind = Literal["timeout", "heartbeat"]
ReopenedStatus = Literal["ready", "running"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event has."""

    workflow_id: str
    seq: int
    at: int
    cause: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        fields = _DOCUMENTS.get(type(self))
        if fields:
            coerce_documents(self, fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEvent(Event):
    """Fields every step event has."""

    step_key: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """``{step_key}#{attempt}``: stable, never changes."""
        return f"{self.step_key}#{self.attempt}"


# ---- workflow events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowStarted(Event):
    """A workflow exists; embeds the full definition so replay never needs the registry."""

    name: str
    version: int
    input: Json
    definition: dict[str, Any]
    seed: int
    tenant: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowPaused(Event):
    """No new steps are scheduled until ``WorkflowResumed``."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowResumed(Event):
    """Scheduling continues."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSignalled(Event):
    """A signal was accepted for a waiting step (its effect follows as step events)."""

    name: str
    payload: Json = NULL


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCompleted(Event):
    """Every node finished; ``output`` maps each sink node id to its output."""

    output: Json = NULL


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowFailed(Event):
    """A node failed with ``on_failure: fail_workflow`` (or a review was rejected)."""

    reason: str
    step_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowCancelled(Event):
    """Cancelled on request; running steps were marked cancelled first."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRetried(Event):
    """A failed or cancelled run was reopened (``RetryWorkflow``); ``StepReopened`` events
    for the steps that run again follow, completed steps keep their results (ADR 0082)."""

    reason: str = ""
    previous_status: str = ""
    """The terminal status the run was reopened from (failed or cancelled)."""


# ---- step events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StepScheduled(StepEvent):
    """An attempt starts: ``kind`` task = send to ``queue``; sleep = timer; approval = signal."""

    node_id: str
    index: int | None
    node_type: str
    queue: str
    kind: StepKind
    input: Json
    timeout_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    due_at: int | None = None
    """For ``sleep``: when the sleep ends."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MapExpanded(StepEvent):
    """A ``for_each`` node has ``count`` children ``node[i]`` with ``inputs[i]``, now ready."""

    node_id: str
    count: int
    inputs: list[Json]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSucceeded(StepEvent):
    """The attempt (or the whole map node) finished with ``output``."""

    output: Json = NULL


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRetryScheduled(StepEvent):
    """``attempt`` failed transiently; attempt+1 is scheduled when timer ``retry:`` fires."""

    error_class: ErrorClassName
    error_type: str
    message: str
    delay_ms: int
    due_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRetryDue(StepEvent):
    """A retry came due while the workflow was paused; ``attempt`` runs on resume."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFailed(StepEvent):
    """The step failed for good; the node's ``on_failure`` applies."""

    error_class: ErrorClassName
    error_type: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepAwaitingReview(StepEvent):
    """The step waits for a human signal; the workflow schedules nothing meanwhile."""

    error_class: ErrorClassName
    error_type: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTimedOut(StepEvent):
    """The attempt ran past ``timeout_ms`` or went silent past ``heartbeat_timeout_ms``."""

    timeout: TimeoutKind


@dataclass(frozen=True, slots=True, kw_only=True)
class StepHeartbeatRecorded(StepEvent):
    """The attempt is alive; its heartbeat deadline moves to ``at + heartbeat_timeout_ms``."""

    details: Json = NULL


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSkipped(StepEvent):
    """Not run: its ``when`` was false or every dependency was skipped (``attempt`` = 0)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCancelled(StepEvent):
    """A running or waiting attempt was abandoned; a later result for it is ignored."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepReopened(StepEvent):
    """A failed or cancelled step of a retried run runs again as ``attempt``.

    ``status`` is ``ready`` (scheduled next) or, for a ``for_each`` node whose children
    exist, ``running`` (its failed and cancelled children are reopened on their own).
    """

    status: ReopenedStatus


# ---- notices (seq = 0, never change state) ----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRejected(Event):
    """A StartWorkflow was refused and no workflow exists (``code`` says why)."""

    code: str
    reason: str
    name: str = ""
    version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateStartIgnored(Event):
    """A StartWorkflow for an existing workflow id; the existing workflow is unchanged."""

    name: str = ""
    version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRejected(Event):
    """An input that cannot apply: unknown workflow/step, bad signal, finished workflow."""

    code: str
    reason: str
    input_type: str
    step_key: str | None = None


NOTICE_TYPES: tuple[type[Event], ...] = (WorkflowRejected, DuplicateStartIgnored, InputRejected)
TERMINAL_TYPES: tuple[type[Event], ...] = (WorkflowCompleted, WorkflowFailed, WorkflowCancelled)
FINAL_TYPES: tuple[type[Event], ...] = (*TERMINAL_TYPES, WorkflowRejected)
"""Types after which a workflow id's run never changes (see :func:`is_final`)."""

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        WorkflowStarted,
        WorkflowPaused,
        WorkflowResumed,
        WorkflowSignalled,
        WorkflowCompleted,
        WorkflowFailed,
        WorkflowCancelled,
        WorkflowRetried,
        StepScheduled,
        MapExpanded,
        StepSucceeded,
        StepRetryScheduled,
        StepRetryDue,
        StepFailed,
        StepAwaitingReview,
        StepTimedOut,
        StepHeartbeatRecorded,
        StepSkipped,
        StepCancelled,
        StepReopened,
        WorkflowRejected,
        DuplicateStartIgnored,
        InputRejected,
    )
}

_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES.values()
}
_DOCUMENTS: dict[type[Event], tuple[tuple[str, bool], ...]] = {
    cls: document_fields(cls) for cls in EVENT_TYPES.values()
}


def is_notice(event: Event) -> bool:
    """True for seq-0 answers that never change state."""
    return isinstance(event, NOTICE_TYPES)


def is_final(event: Event) -> bool:
    """True for events after which a workflow never changes (terminal, or its start rejected)."""
    return isinstance(event, FINAL_TYPES)


def event_to_dict(event: Event) -> dict[str, Any]:
    """Dict with a ``"type"`` key (lossless; fields are JSON values or ``Json`` documents)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for name in _FIELD_NAMES[type(event)]:
        out[name] = getattr(event, name)
    return out


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of ``event_to_dict``; raises ``ValueError`` naming the bad type or field."""
    body = dict(data)
    type_name = body.pop("type", None)
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise ValueError(f"type: unknown event type {type_name!r}")
    try:
        return cls(**body)
    except TypeError as exc:
        raise ValueError(f"{type_name}: {exc}") from exc
