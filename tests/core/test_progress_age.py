"""``awaiting_progress_since``: when a running workflow last moved, from recorded times only."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kflow.core import ErrorClass, replay
from kflow.core.views import awaiting_progress_since
from tests.core.driver import Driver, chain, node, workflow


def test_the_latest_event_time_counts() -> None:
    d = Driver(chain(3))
    d.start()
    assert awaiting_progress_since(d.s) == 1_000
    d.now = 5_000
    d.ok("n0", 0)
    assert awaiting_progress_since(d.s) == 5_000
    d.now = 9_000
    d.beat("n1")  # no heartbeat timeout: a heartbeat records nothing, so it is no progress
    assert awaiting_progress_since(d.s) == 5_000


def test_a_step_in_backoff_is_not_late_before_its_retry_is_due() -> None:
    d = Driver(workflow(node("a")))
    d.start()
    d.now = 2_000
    d.err("a", ErrorClass.TRANSIENT)
    due = d.s.steps[d.key("a")].due_at
    assert due is not None and due > 2_000
    assert awaiting_progress_since(d.s) == due


def test_finished_paused_and_reviewed_workflows_are_not_waiting_for_progress() -> None:
    done = Driver(workflow(node("a")))
    done.start()
    done.ok("a", 1)
    assert awaiting_progress_since(done.s) is None
    paused = Driver(workflow(node("a")))
    paused.start()
    paused.pause()
    assert awaiting_progress_since(paused.s) is None
    review = Driver(workflow(node("a")))
    review.start()
    review.err("a", ErrorClass.NEEDS_REVIEW)
    assert awaiting_progress_since(review.s) is None


@given(
    st.lists(st.tuples(st.sampled_from(["ok", "err", "beat"]), st.integers(1, 10_000)), max_size=8)
)
def test_it_depends_only_on_the_log(steps: list[tuple[str, int]]) -> None:
    """The same log gives the same answer, whatever the clock says when it is asked."""
    d = Driver(chain(4))
    d.start()
    for action, gap in steps:
        if d.s.status != "running" or not d.running():
            break
        d.now += gap
        local = d.running()[0]
        if action == "ok":
            d.ok(local, gap)
        elif action == "err":
            d.err(local)
        else:
            d.beat(local)
    since = awaiting_progress_since(d.s)
    assert since == awaiting_progress_since(replay(d.log))
    if since is not None:
        assert since >= d.s.started_at
