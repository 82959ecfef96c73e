"""The one builder of envelope metadata (:class:`~kflow.bus.contracts.EnvelopeMeta`).

Every record kflow writes (commands from the API, the CLI, the client and the outbox relay;
events and tasks from the orchestrator; results from processors) gets its event id, time,
correlation, causation, actor, tenant and idempotency key here, with the same defaults.
"""

from __future__ import annotations

import uuid

from kflow.bus.contracts import Body, EnvelopeMeta
from kflow.bus.eos_handler import system_clock_ms
from kflow.bus.records import ExecuteStep
from kflow.core.events import Event

# Namespace of ids derived from an idempotency key: never change it, or retries start twice.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1d6c4e-2b7a-4d0e-9a51-6b9f3f0c7a11")


def new_event_id() -> str:
    """A fresh, unique event id (a random UUID)."""
    return str(uuid.uuid4())


def envelope_meta(
    body: Body,
    *,
    event_id: str | None = None,
    occurred_at: int | None = None,
    causation_id: str | None = None,
    correlation_id: str | None = None,
    actor: str | None = None,
    tenant: str | None = None,
    idempotency_key: str | None = None,
) -> EnvelopeMeta:
    """The envelope fields of a record carrying ``body``.

    Defaults: a new random ``event_id``; ``occurred_at`` is the body's own time (an event's
    ``at``, a task's ``scheduled_at``) or now for commands and results; ``correlation_id``
    is the workflow id. Pass ``event_id`` and ``occurred_at`` when a record written twice
    must be byte-identical (orchestrator outputs, outbox rows, results).
    """
    if occurred_at is None:
        if isinstance(body, Event):
            occurred_at = body.at
        elif isinstance(body, ExecuteStep):
            occurred_at = body.scheduled_at
        else:
            occurred_at = system_clock_ms()
    return EnvelopeMeta(
        event_id=event_id if event_id is not None else new_event_id(),
        occurred_at=occurred_at,
        causation_id=causation_id,
        correlation_id=correlation_id if correlation_id is not None else body.workflow_id,
        actor=actor,
        tenant=tenant,
        idempotency_key=idempotency_key,
    )


def workflow_id_for(tenant: str, idempotency_key: str) -> str:
    """The workflow id a tenant's idempotency key always maps to (API and client alike)."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant}\n{idempotency_key}"))
