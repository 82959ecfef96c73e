"""One event as read from ``{p}.events``: the core event plus its envelope and coordinates."""

from __future__ import annotations

from dataclasses import dataclass

from kflow.core.events import Event

DEFAULT_TENANT = "default"
"""Tenant of events whose envelope names none."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """A decoded event record."""

    topic: str
    partition: int
    offset: int
    event: Event
    event_id: str
    tenant: str
    actor: str | None
    timestamp_ms: int
    """The Kafka record timestamp: when the orchestrator wrote it."""

    @property
    def workflow_id(self) -> str:
        return self.event.workflow_id

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def type(self) -> str:
        return type(self.event).__name__


@dataclass(frozen=True)
class Poison:
    """Why a record cannot be projected (goes to the DLQ; the partition moves on)."""

    reason: str
    error_type: str
    message: str

    @classmethod
    def of(cls, reason: str, error: Exception) -> Poison:
        """The poison of a record that failed with ``error``."""
        return cls(reason, type(error).__name__, str(error))


@dataclass(frozen=True, slots=True)
class DefinitionRecord:
    """A record of the compacted definitions topic (``definition`` None = the version is gone).

    ``refused`` says why a record that replaced the version registers nothing (it failed
    ``kflow.registry.checked``); a tombstone has no ``refused``.
    """

    topic: str
    partition: int
    offset: int
    name: str
    version: int
    definition: dict[str, object] | None
    refused: Poison | None = None
