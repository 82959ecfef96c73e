"""Request and response bodies of the read-model API (these shape the OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SIGNAL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_\[\]-]{0,127}$"


class StepError(BaseModel):
    """The last error of a step attempt."""

    error_class: str | None
    error_type: str | None
    message: str | None


class StepView(BaseModel):
    """One step of an execution, as folded from its events."""

    step_key: str
    node_id: str
    index: int | None
    status: str
    attempts: int
    node_type: str | None
    scheduled_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    output: Any = None
    error: StepError | None = None


class WorkflowSummary(BaseModel):
    """One execution in a list."""

    workflow_id: str
    tenant: str
    name: str
    version: int
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_seq: int


class WorkflowDetail(WorkflowSummary):
    """One execution with its input, result and steps."""

    input: Any = None
    output: Any = None
    reason: str = ""
    actor: str | None = None
    steps: list[StepView]
    links: dict[str, str]


class WorkflowPage(BaseModel):
    """A page of executions, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[WorkflowSummary]
    next_cursor: str | None


class EventView(BaseModel):
    """One event of the audit trail (``seq`` 0 marks a notice that changed nothing)."""

    seq: int
    type: str
    at: datetime
    event_id: str
    actor: str | None
    body: dict[str, Any]


class EventPage(BaseModel):
    """Events in seq order; pass ``next_after_seq`` as ``after_seq`` for the next page."""

    items: list[EventView]
    next_after_seq: int | None


class DefinitionView(BaseModel):
    """A registered workflow definition."""

    name: str
    version: int
    definition: dict[str, Any]


class StartWorkflowRequest(BaseModel):
    """Start a workflow; a ``workflow_id`` or an ``Idempotency-Key`` header makes retries safe."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="registered definition name")
    version: int | None = Field(
        None, ge=1, le=1_000_000, description="definition version; latest known when omitted"
    )
    input: Any = Field(None, description="the workflow's input document")
    workflow_id: str | None = Field(
        None, pattern=WORKFLOW_ID_PATTERN, description="your own id (retries reuse it)"
    )


class ReasonRequest(BaseModel):
    """Why a workflow is cancelled or paused (recorded in the event)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=1000)


class SignalRequest(BaseModel):
    """A signal's payload; for approvals ``{"approved": true, "output": ...}``."""

    model_config = ConfigDict(extra="forbid")

    payload: Any = None


class Accepted(BaseModel):
    """The command was published to the commands topic; it is applied asynchronously."""

    workflow_id: str
    command: str
    links: dict[str, str]
