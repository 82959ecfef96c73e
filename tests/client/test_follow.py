"""Which run a handle follows, from history and live events in any interleaving (no servers)."""

from __future__ import annotations

from kflow.client.follow import Follower, Logged
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    StepScheduled,
    WorkflowCompleted,
    WorkflowRejected,
    WorkflowStarted,
)

WID = "wf-1"


def started(run: int = 0) -> WorkflowStarted:
    return WorkflowStarted(
        workflow_id=WID, seq=1, at=1, name="n", version=1, input=run, definition={}, seed=0
    )


def step(seq: int) -> StepScheduled:
    return StepScheduled(
        workflow_id=WID,
        seq=seq,
        at=seq,
        step_key=f"{WID}/s{seq}",
        attempt=1,
        node_id=f"s{seq}",
        index=None,
        node_type="echo",
        queue="default",
        input=None,
        kind="task",
    )


def completed(seq: int) -> WorkflowCompleted:
    return WorkflowCompleted(workflow_id=WID, seq=seq, at=seq, output={"seq": seq})


def duplicate() -> DuplicateStartIgnored:
    return DuplicateStartIgnored(workflow_id=WID, seq=0, at=9)


def rejected() -> WorkflowRejected:
    return WorkflowRejected(workflow_id=WID, seq=0, at=9, code="unknown_definition", reason="r")


def log(*events: tuple[Event, str | None], first_offset: int = 0) -> list[Logged]:
    """``(event, causation id)`` pairs at consecutive offsets (gaps of 2: commit markers)."""
    return [Logged.of(e, first_offset + 2 * i, cause) for i, (e, cause) in enumerate(events)]


def events(follower: Follower) -> list[Event]:
    return [logged.event for logged in follower.run]


def final(follower: Follower) -> Event | None:
    return follower.final.event if follower.final is not None else None


RUN_A = log((started(), "cmd-a"), (step(2), "x"), (completed(3), "y"))


def test_a_fresh_start_is_followed_from_its_own_answer_live() -> None:
    follower = Follower(WID, "cmd-a")
    assert not follower.needs_history
    assert [follower.live(r) for r in RUN_A] == [True, True, True]
    assert events(follower) == [r.event for r in RUN_A]
    assert final(follower) == RUN_A[-1].event
    assert not follower.live(Logged.of(duplicate(), 99, "cmd-b"))  # after the end: ignored


def test_other_events_before_the_answer_are_not_part_of_the_run() -> None:
    follower = Follower(WID, "cmd-b")
    earlier = log((rejected(), "cmd-old"), (step(5), "z"))
    assert [follower.live(r) for r in earlier] == [False, False]
    assert follower.live(Logged.of(rejected(), 10, "cmd-b"))
    assert events(follower) == [rejected()] and final(follower) == rejected()


def test_a_duplicate_of_a_run_seen_live_follows_that_run() -> None:
    follower = Follower(WID, "cmd-b")
    follower.live(RUN_A[0])
    follower.live(RUN_A[1])
    assert follower.live(Logged.of(duplicate(), 3, "cmd-b"))
    assert events(follower) == [RUN_A[0].event, RUN_A[1].event, duplicate()]
    assert follower.live(Logged.of(completed(3), 5, "y"))
    assert final(follower) == completed(3)


def test_a_duplicate_of_an_older_run_asks_for_the_history_then_follows_it() -> None:
    follower = Follower(WID, "cmd-b")
    notice = Logged.of(duplicate(), 20, "cmd-b")
    assert follower.live(notice)  # a change: waiters must wake to read the history
    assert follower.needs_history and events(follower) == []
    assert follower.history([*RUN_A, notice])  # the history already holds the notice
    assert events(follower) == [r.event for r in RUN_A]  # the run ended before the notice
    assert final(follower) == completed(3)


def test_get_handle_follows_the_latest_run_in_the_history() -> None:
    follower = Follower(WID)
    assert follower.needs_history
    run_b = log((started(run=2), "cmd-b"), (step(2), "x"), first_offset=10)
    live = Logged.of(completed(3), 30, "y")
    assert not follower.live(live)  # buffered until the history is read
    assert follower.history([*RUN_A, *run_b])
    assert events(follower) == [run_b[0].event, run_b[1].event, completed(3)]
    assert final(follower) == completed(3)


def test_history_and_live_overlap_is_taken_once() -> None:
    follower = Follower(WID)
    for r in RUN_A[1:]:
        follower.live(r)  # the watcher saw these while the history was being read
    follower.history(RUN_A[:2])
    assert events(follower) == [r.event for r in RUN_A]
    assert not follower.live(RUN_A[2])  # the watcher may hand it over again


def test_get_handle_of_a_rejected_id_ends_rejected() -> None:
    follower = Follower(WID)
    follower.history(log((rejected(), "cmd-x")))
    assert final(follower) == rejected()


def test_get_handle_before_the_start_waits_for_the_first_run() -> None:
    follower = Follower(WID)
    assert not follower.history([])
    assert not follower.needs_history and events(follower) == []
    assert not follower.live(Logged.of(step(4), 1, "stale"))  # not a run's beginning
    later = log(*[(r.event, None) for r in RUN_A], first_offset=5)
    assert [follower.live(r) for r in later] == [True, True, True]
    assert final(follower) == completed(3)
