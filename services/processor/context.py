"""What a running node can see about the step it is executing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HeartbeatFn = Callable[[Any], None]


def _no_heartbeat(details: Any) -> None:
    del details


@dataclass(frozen=True)
class StepContext:
    """Coordinates of one step attempt, passed to nodes that ask for it.

    ``idempotency_key`` (``"{step_key}#{attempt}"``) is stable across redeliveries
    of the same attempt; ``step_key`` is stable across attempts. Use them to make
    external side effects idempotent (e.g. as an HTTP ``Idempotency-Key`` header).
    ``traceparent`` is the W3C trace context of this attempt's span when tracing is on
    (ADR 0037): send it on (e.g. as an HTTP ``traceparent`` header) to join the workflow's
    trace; the span is also OpenTelemetry's current span while the node runs.
    """

    workflow_id: str
    step_key: str
    node_id: str
    node_type: str
    attempt: int
    idempotency_key: str
    timeout_ms: int
    traceparent: str | None = None
    _heartbeat: HeartbeatFn = field(default=_no_heartbeat, repr=False, compare=False)

    def heartbeat(self, details: Any = None) -> None:
        """Tell the orchestrator the step is alive (optional progress ``details``)."""
        self._heartbeat(details)
