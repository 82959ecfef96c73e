"""Replay and verify: recorded histories checked on every run, divergences located."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kflow.core import event_from_dict, event_to_dict, evolve, replay, verify
from kflow.core.events import Event
from tests.core.record_histories import HISTORIES, SCENARIOS

HISTORY_FILES = sorted(HISTORIES.glob("*.json"))


def load(path: Path) -> list[Event]:
    return [event_from_dict(row) for row in json.loads(path.read_text())]


def test_there_are_recorded_histories() -> None:
    assert {p.stem for p in HISTORY_FILES} == set(SCENARIOS)


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.stem)
def test_recorded_history_verifies(path: Path) -> None:
    assert verify(load(path)) is None


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.stem)
def test_recorded_history_is_what_the_current_code_emits(path: Path) -> None:
    live = [event_to_dict(e) for e in SCENARIOS[path.stem]().log]
    assert live == json.loads(path.read_text())


@pytest.mark.parametrize("path", HISTORY_FILES, ids=lambda p: p.stem)
def test_replay_equals_live_state_and_event_by_event_fold(path: Path) -> None:
    live = SCENARIOS[path.stem]()
    events = load(path)
    assert replay(events) == live.s
    state = None
    for event in events:
        state = evolve(state, event)
    assert state == live.s


def test_verify_reports_first_divergence_with_seq_and_both_events() -> None:
    events = load(HISTORIES / "retry_and_skip.json")
    rows = [event_to_dict(e) for e in events]
    target = next(r for r in rows if r["type"] == "StepRetryScheduled")
    target["delay_ms"] += 1
    target["due_at"] += 1
    divergence = verify([event_from_dict(r) for r in rows])
    assert divergence is not None
    assert divergence.seq == target["seq"]
    assert divergence.expected is not None and divergence.actual is not None
    assert divergence.expected["delay_ms"] == divergence.actual["delay_ms"] + 1
    assert f"seq {target['seq']}" in str(divergence)


def test_verify_detects_missing_and_extra_events() -> None:
    events = load(HISTORIES / "pause_cancel.json")
    cut = [e for e in events if e.seq != 7]  # drop a derived StepScheduled
    divergence = verify(cut)
    assert divergence is not None and divergence.seq == 7 and divergence.expected is None
    orphan = [*events[:3], events[5]]
    assert verify(orphan) is not None


def test_replay_rejects_corrupt_logs() -> None:
    events = load(HISTORIES / "pause_cancel.json")
    with pytest.raises(ValueError, match="gapless"):
        replay([events[0], events[2]])
    with pytest.raises(ValueError, match="no WorkflowStarted"):
        replay([])
    with pytest.raises(ValueError, match="before WorkflowStarted"):
        replay(events[1:])
