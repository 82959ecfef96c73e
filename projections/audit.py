"""Audit one workflow from the log itself: its events, its state at any point, and ``verify``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kflow.bus.contracts import default_contracts
from kflow.bus.reader import read_key
from kflow.bus.topics import TopicNames
from kflow.core.events import is_notice
from kflow.core.fold import evolve_all
from kflow.core.replay import Divergence, verify
from kflow.core.state import WorkflowState
from kflow.projections.decoding import Decoder
from kflow.projections.log_event import LogEvent


@dataclass(frozen=True)
class AuditResult:
    """One workflow's log, its state at the requested point and the verification outcome."""

    events: list[LogEvent]
    state: WorkflowState | None
    divergence: Divergence | None
    fold_error: str | None


def read_workflow_events(
    bootstrap: str, topics: TopicNames, workflow_id: str, timeout_s: float = 60.0
) -> list[LogEvent]:
    """Every event of ``workflow_id`` in log order (read_committed, from offset 0).

    Only the workflow's partition is read, to its end: if that does not finish within
    ``timeout_s`` this raises ``ReaderError``, so a partial history is never audited.
    """
    decode = Decoder(default_contracts(), topics)
    found: list[LogEvent] = []
    for record in read_key(bootstrap, topics.events, workflow_id, timeout_s):
        decoded = decode.record(record)
        if isinstance(decoded, LogEvent):
            found.append(decoded)
    return found


def within(le: LogEvent, at_seq: int | None, at_time_ms: int | None) -> bool:
    """True if ``le`` is at or before the requested seq and time."""
    return (at_seq is None or le.seq <= at_seq) and (
        at_time_ms is None or le.event.at <= at_time_ms
    )


def audit(
    events: Sequence[LogEvent], at_seq: int | None = None, at_time_ms: int | None = None
) -> AuditResult:
    """Re-fold the events up to ``at_seq``/``at_time_ms`` and verify the whole log."""
    chosen = [le for le in events if within(le, at_seq, at_time_ms)]
    state: WorkflowState | None = None
    fold_error = None
    try:
        state = evolve_all(None, [le.event for le in chosen if not is_notice(le.event)])
    except ValueError as e:
        fold_error = str(e)
    divergence = None
    if events:
        try:
            divergence = verify([le.event for le in events])
        except ValueError as e:  # re-deciding could not even run: the log is corrupt there
            fold_error = fold_error or f"verify: {e}"
    return AuditResult(list(events), state, divergence, fold_error)
