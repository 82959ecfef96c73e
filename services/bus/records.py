"""Records the bus carries that are not core inputs or events: tasks, snapshots, definitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kflow.core.jsondoc import NULL, Json, coerce_documents, document_fields


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecuteStep:
    """One step attempt for a node processor (``{prefix}.tasks.<queue>``, key = ``step_key``)."""

    workflow_id: str
    step_key: str
    node_id: str
    node_type: str
    queue: str
    attempt: int
    input: Json = NULL
    timeout_ms: int = 0
    """0 = no timeout."""
    heartbeat_timeout_ms: int = 0
    """0 = no heartbeat deadline."""
    idempotency_key: str
    """``{step_key}#{attempt}``; stable, never changes."""
    scheduled_at: int

    def __post_init__(self) -> None:
        coerce_documents(self, _TASK_DOCUMENTS)


_TASK_DOCUMENTS = document_fields(ExecuteStep)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSnapshot:
    """Latest state of one active workflow (compacted ``{prefix}.snapshots``, key = id)."""

    workflow_id: str
    seq: int
    """seq of the last event folded into ``state``."""
    state: dict[str, Any]
    """``WorkflowState.to_dict()``."""
    taken_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDefinitionRecord:
    """A registered definition (compacted ``{prefix}.definitions``, key = ``name@version``)."""

    name: str
    version: int
    definition: dict[str, Any]
    registered_at: int
    actor: str | None = None

    @property
    def key(self) -> str:
        """The record key: ``name@version``."""
        return f"{self.name}@{self.version}"
