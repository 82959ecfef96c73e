"""Determinism tools: rebuild state from a log, and re-derive a log from its own inputs.

Each accepted input is recorded in the ``cause`` of the first event it produced
(minus fields that event repeats, see ``Decision.take_cause``), and ``at`` of that
event is the ``now`` it was decided at. ``verify`` re-decides every batch and
compares the result with the recorded events.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kflow.core.access import ACCESS_CODES
from kflow.core.events import (
    Event,
    InputRejected,
    StepSucceeded,
    WorkflowRejected,
    WorkflowStarted,
    event_to_dict,
    is_notice,
)
from kflow.core.fold import evolve_all
from kflow.core.inputs import Input, input_from_dict
from kflow.core.machine import decide
from kflow.core.state import WorkflowState


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first recorded event that re-deciding does not reproduce."""

    seq: int
    index: int
    """Position in the log (notices have seq 0, so the index pinpoints them)."""
    expected: dict[str, Any] | None
    """The recorded event (None: re-deciding produced an extra event)."""
    actual: dict[str, Any] | None
    """The re-derived event (None: re-deciding produced fewer events)."""

    def __str__(self) -> str:
        return (
            f"divergence at seq {self.seq} (log index {self.index}):\n"
            f"  recorded: {self.expected}\n  derived:  {self.actual}"
        )


def replay(events: Iterable[Event]) -> WorkflowState:
    """Fold a workflow's events into its state; raises ``ValueError`` if none started it."""
    state = evolve_all(None, events)
    if state is None:
        raise ValueError("the events contain no WorkflowStarted")
    return state


def recorded_input(event: Event) -> Input | None:
    """The input recorded in ``event.cause``, or None (no cause, or a field was elided)."""
    if event.cause is None or event.cause.get("elided"):
        return None
    data = dict(event.cause)
    data.pop("idempotency_key", None)  # an envelope field: see recorded_key
    if isinstance(event, WorkflowStarted) and data["type"] == "StartWorkflow":
        data.setdefault("input", event.input)
        data.setdefault("definition", event.definition)
    elif isinstance(event, StepSucceeded) and data["type"] == "StepResult":
        data.setdefault("output", event.output)
    return input_from_dict(data)


def recorded_key(event: Event) -> str | None:
    """The idempotency key of the command recorded in ``event.cause`` (ADR 0018)."""
    key = (event.cause or {}).get("idempotency_key")
    return key if isinstance(key, str) else None


def batches(events: Sequence[Event]) -> list[tuple[int, list[Event]]]:
    """Split a log into (start index, events) per input: a batch starts at each ``cause``."""
    out: list[tuple[int, list[Event]]] = []
    for index, event in enumerate(events):
        if event.cause is not None or not out:
            out.append((index, [event]))
        else:
            out[-1][1].append(event)
    return out


def verify(events: Sequence[Event]) -> Divergence | None:
    """Re-derive every event from the recorded inputs; the first mismatch, or None.

    Batches whose cause was elided (oversized payloads) are applied without comparison;
    commands refused for their identity are recorded verdicts, not re-decided.
    """
    state: WorkflowState | None = None
    for start, batch in batches(events):
        head = batch[0]
        if head.cause is None:
            return Divergence(head.seq, start, event_to_dict(head), None)
        command = recorded_input(head)
        if isinstance(head, WorkflowRejected | InputRejected) and head.code in ACCESS_CODES:
            continue  # the orchestrator's verdict on a signature (ADR 0060): not decide's
        if command is not None:
            derived = decide(state, command, head.at, idempotency_key=recorded_key(head))
            for offset in range(max(len(batch), len(derived))):
                want = event_to_dict(batch[offset]) if offset < len(batch) else None
                got = event_to_dict(derived[offset]) if offset < len(derived) else None
                if want != got:
                    seq = (want or got or {}).get("seq", 0)
                    return Divergence(seq, start + offset, want, got)
        state = evolve_all(state, [e for e in batch if not is_notice(e)])
    return None
