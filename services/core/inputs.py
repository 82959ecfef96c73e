"""What ``decide`` consumes: commands from users/services and results from processors.

Class names are the wire ``type`` names. All fields are JSON values except
``StartWorkflow.definition`` (a ``WorkflowDefinition``), ``StepError.error_class``
(an ``ErrorClass``) and the JSON documents (``Json``: plain Python data given for one is
wrapped, ADR 0026); ``input_to_dict``/``input_from_dict`` convert them losslessly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kflow.core.definition import WorkflowDefinition, parse_definition
from kflow.core.errors import ErrorClass
from kflow.core.jsondoc import NULL, Json, coerce_documents, document_fields


@dataclass(frozen=True, slots=True, kw_only=True)
class StartWorkflow:
    """Start ``workflow_id``; the orchestrator resolves ``definition`` (None = unknown name)."""

    workflow_id: str
    name: str
    version: int
    input: Json = NULL
    definition: WorkflowDefinition | None = None
    tenant: str | None = None
    actor: str | None = None

    def __post_init__(self) -> None:
        coerce_documents(self, _DOCUMENTS[type(self)])


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelWorkflow:
    """End the workflow now; running steps are marked cancelled."""

    workflow_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseWorkflow:
    """Stop scheduling new steps (running ones finish and are recorded)."""

    workflow_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeWorkflow:
    """Undo ``PauseWorkflow``: schedule everything that became ready meanwhile."""

    workflow_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryWorkflow:
    """Reopen a failed or cancelled run from the steps that did not finish (ADR 0082).

    Completed steps keep their results; each failed or cancelled step runs again as its
    next attempt (same step key), and the DAG continues from there.
    """

    workflow_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalWorkflow:
    """Deliver a human/external decision to a waiting step.

    ``name`` is the step's local key: the node id, or ``node[i]`` for a map child.
    ``payload`` is an object with ``approved: bool`` and, optionally, ``output``
    (an approved review with ``output`` completes the step with it; without
    ``output`` it retries the step as a new attempt).
    """

    workflow_id: str
    name: str
    payload: Json = NULL

    def __post_init__(self) -> None:
        coerce_documents(self, _DOCUMENTS[type(self)])


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """A processor finished ``step_key`` attempt ``attempt`` with ``output``."""

    workflow_id: str
    step_key: str
    attempt: int
    output: Json = NULL

    def __post_init__(self) -> None:
        coerce_documents(self, _DOCUMENTS[type(self)])


@dataclass(frozen=True, slots=True, kw_only=True)
class StepError:
    """A processor's attempt failed; ``error_class`` decides retry / fail / review."""

    workflow_id: str
    step_key: str
    attempt: int
    error_class: ErrorClass
    error_type: str = "Error"
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.error_class, ErrorClass):
            object.__setattr__(self, "error_class", ErrorClass(self.error_class))


@dataclass(frozen=True, slots=True, kw_only=True)
class StepHeartbeat:
    """A long-running attempt is alive; resets its heartbeat timeout."""

    workflow_id: str
    step_key: str
    attempt: int
    details: Json = NULL

    def __post_init__(self) -> None:
        coerce_documents(self, _DOCUMENTS[type(self)])


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    """A timer from ``pending_timers`` came due (retry backoff, timeout, heartbeat, sleep)."""

    workflow_id: str
    timer_id: str
    due_at: int


Input = (
    StartWorkflow
    | CancelWorkflow
    | PauseWorkflow
    | ResumeWorkflow
    | SignalWorkflow
    | RetryWorkflow
    | StepResult
    | StepError
    | StepHeartbeat
    | TimerFired
)

INPUT_TYPES: dict[str, type[Input]] = {
    cls.__name__: cls
    for cls in (
        StartWorkflow,
        CancelWorkflow,
        PauseWorkflow,
        ResumeWorkflow,
        SignalWorkflow,
        RetryWorkflow,
        StepResult,
        StepError,
        StepHeartbeat,
        TimerFired,
    )
}


_DOCUMENTS: dict[type, tuple[tuple[str, bool], ...]] = {
    cls: document_fields(cls) for cls in INPUT_TYPES.values()
}


def input_to_dict(value: Input) -> dict[str, Any]:
    """Dict with a ``"type"`` key (lossless; documents stay ``Json``)."""
    out: dict[str, Any] = {"type": type(value).__name__}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if isinstance(item, WorkflowDefinition):
            item = item.to_dict()
        elif isinstance(item, ErrorClass):
            item = item.value
        out[field.name] = item
    return out


def input_from_dict(data: dict[str, Any]) -> Input:
    """Inverse of ``input_to_dict``; raises ``ValueError`` naming the bad field."""
    body = dict(data)
    type_name = body.pop("type", None)
    cls = INPUT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        known = ", ".join(sorted(INPUT_TYPES))
        raise ValueError(f"type: unknown input type {type_name!r}; expected one of {known}")
    if cls is StartWorkflow and body.get("definition") is not None:
        body["definition"] = parse_definition(body["definition"])
    try:
        return cls(**body)
    except TypeError as exc:
        raise ValueError(f"{type_name}: {exc}") from exc
