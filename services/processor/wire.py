"""Task and result records as the processor reads and writes them."""

from __future__ import annotations

from kflow.bus.contracts import decode, encode_input
from kflow.bus.envelope import envelope_meta
from kflow.bus.eos_handler import system_clock_ms
from kflow.bus.errors import DecodeError, DecodeFailure
from kflow.bus.records import ExecuteStep
from kflow.core.inputs import StepError, StepHeartbeat, StepResult

__all__ = ["ExecuteStep", "decode_task", "encode_result"]


def decode_task(data: bytes) -> ExecuteStep:
    """The ExecuteStep in ``data``; raises DecodeError for anything else."""
    envelope = decode(data)
    if not isinstance(envelope.body, ExecuteStep):
        raise DecodeError(
            DecodeFailure.WRONG_TYPE, f"expected ExecuteStep on a task topic, got {envelope.type}"
        )
    return envelope.body


def encode_result(value: StepResult | StepError | StepHeartbeat) -> bytes:
    """Envelope bytes of a result, error or heartbeat for ``{prefix}.results``."""
    now = system_clock_ms()
    key = f"{value.step_key}#{value.attempt}"
    kind = type(value).__name__
    meta = envelope_meta(
        value,
        event_id=f"{key}/{kind}/{now}" if isinstance(value, StepHeartbeat) else f"{key}/{kind}",
        occurred_at=now,
        causation_id=key,
        idempotency_key=key,
    )
    return encode_input(value, meta)
