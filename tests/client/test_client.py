"""kflow.Client on the real stack: an orchestrator and a processor on the test's own topics."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import kflow
from kflow.bus import reader as bus_reader
from kflow.bus.contracts import decode
from kflow.bus.reader import ReaderError, read_key
from kflow.bus.topics import topic_names
from kflow.client import watcher as client_watcher
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    StepScheduled,
    StepSucceeded,
    WorkflowCompleted,
    WorkflowPaused,
    WorkflowRejected,
    WorkflowResumed,
    WorkflowStarted,
    is_final,
)
from kflow.settings import Settings
from tests.client.conftest import DIAMOND_OUTPUT, TEST_QUEUES, Runtime

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

WAIT_S = 90.0  # a safety net against hangs, not a speed assertion


def the_log(settings: Settings, workflow_id: str) -> list[Event]:
    """Every event of ``workflow_id`` in the events topic, in log order."""
    records = read_key(
        settings.kafka_bootstrap, topic_names(settings.topic_prefix).events, workflow_id
    )
    return [body for r in records if r.value and isinstance(body := decode(r.value).body, Event)]


def assert_one_run(events: list[Event]) -> None:
    """The events of one run: WorkflowStarted first, a gapless seq, one final event last."""
    assert isinstance(events[0], WorkflowStarted)
    seqs = [e.seq for e in events if e.seq]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [is_final(e) for e in events].count(True) == 1
    assert is_final(events[-1])


def wait_for(handle: kflow.WorkflowHandle, type_: type[Event], **fields: Any) -> Event:
    """The first event of type ``type_`` (with ``fields``) the handle yields."""
    for event in handle.events(timeout=WAIT_S):
        if isinstance(event, type_) and all(getattr(event, k) == v for k, v in fields.items()):
            return event
    raise AssertionError(f"{handle.workflow_id} ended without {type_.__name__} {fields}")


def test_a_completed_workflow_gives_its_output(client: kflow.Client) -> None:
    handle = client.start("diamond", {"x": 7})
    assert handle.result(timeout=WAIT_S) == DIAMOND_OUTPUT


def test_a_failed_workflow_raises_workflow_failed(client: kflow.Client) -> None:
    handle = client.start("failing")
    with pytest.raises(kflow.WorkflowFailed) as failed:
        handle.result(timeout=WAIT_S)
    assert "no way" in failed.value.reason
    assert failed.value.step_key == f"{handle.workflow_id}/boom"
    assert failed.value.workflow_id == handle.workflow_id


def test_a_cancelled_workflow_raises_workflow_cancelled(client: kflow.Client) -> None:
    handle = client.start("gated")
    wait_for(handle, StepScheduled, kind="approval")
    handle.cancel("not needed")
    with pytest.raises(kflow.WorkflowCancelled) as cancelled:
        handle.result(timeout=WAIT_S)
    assert cancelled.value.reason == "not needed"


def test_an_unknown_definition_raises_workflow_rejected(client: kflow.Client) -> None:
    handle = client.start("no-such-definition", id="rejected-1")
    with pytest.raises(kflow.WorkflowRejected) as rejected:
        handle.result(timeout=WAIT_S)
    assert rejected.value.code == "unknown_definition"
    assert "no-such-definition" in rejected.value.reason
    assert [type(e) for e in handle.events(timeout=WAIT_S)] == [WorkflowRejected]
    # a handle from get_handle finds the rejection in the log
    with pytest.raises(kflow.WorkflowRejected):
        client.get_handle("rejected-1").result(timeout=WAIT_S)


def test_a_signal_approves_the_waiting_step(client: kflow.Client) -> None:
    handle = client.start("gated")
    wait_for(handle, StepScheduled, kind="approval")
    handle.signal("gate", {"approved": True, "by": "ana"})
    assert handle.result(timeout=WAIT_S) == {"after": {"by": "ana"}}


def test_pause_holds_new_steps_until_resume(client: kflow.Client) -> None:
    handle = client.start("gated")
    wait_for(handle, StepScheduled, kind="approval")
    handle.pause("vendor")
    wait_for(handle, WorkflowPaused)
    handle.signal("gate", {"approved": True, "by": "bo"})
    wait_for(handle, StepSucceeded, step_key=f"{handle.workflow_id}/gate")
    handle.resume()
    assert handle.result(timeout=WAIT_S) == {"after": {"by": "bo"}}
    events = list(handle.events(timeout=WAIT_S))
    types = [type(e) for e in events]
    after = next(
        i for i, e in enumerate(events) if isinstance(e, StepScheduled) and e.node_id == "after"
    )
    assert types.index(WorkflowPaused) < types.index(WorkflowResumed) < after


def test_events_are_the_whole_log_in_order(client: kflow.Client, runtime: Runtime) -> None:
    handle = client.start("diamond", {"x": 7})
    followed = list(handle.events(timeout=WAIT_S))
    assert_one_run(followed)
    assert isinstance(followed[-1], WorkflowCompleted)
    assert followed == the_log(runtime.settings, handle.workflow_id)
    # iterating again (or without following) gives the same events
    assert list(handle.events(follow=False)) == followed


def test_get_handle_of_a_finished_workflow_reads_its_history(
    client: kflow.Client, runtime: Runtime
) -> None:
    workflow_id = client.start("diamond", {"x": 7}, id="finished-1").workflow_id
    assert client.start("diamond", {"x": 7}).result(timeout=WAIT_S) == DIAMOND_OUTPUT
    client.get_handle(workflow_id).result(timeout=WAIT_S)
    with kflow.Client(runtime.settings) as fresh:  # knows nothing of it
        handle = fresh.get_handle(workflow_id)
        assert handle.result(timeout=WAIT_S) == DIAMOND_OUTPUT
        assert list(handle.events(timeout=WAIT_S)) == the_log(runtime.settings, workflow_id)


def test_get_handle_of_a_running_workflow_joins_history_and_live(
    client: kflow.Client, runtime: Runtime
) -> None:
    started = client.start("gated")
    wait_for(started, StepScheduled, kind="approval")
    with kflow.Client(runtime.settings) as other:
        joined = other.get_handle(started.workflow_id)
        so_far = list(joined.events(follow=False))
        assert [type(e) for e in so_far[:1]] == [WorkflowStarted]
        started.signal("gate", {"approved": True, "by": "cy"})
        assert joined.result(timeout=WAIT_S) == {"after": {"by": "cy"}}
        followed = list(joined.events(timeout=WAIT_S))
    assert followed[: len(so_far)] == so_far
    assert_one_run(followed)
    assert followed == the_log(runtime.settings, started.workflow_id)


def test_get_handle_before_the_workflow_starts_waits_for_it(client: kflow.Client) -> None:
    early = client.get_handle("later-1")
    assert list(early.events(follow=False)) == []
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(early.result, WAIT_S)
        client.start("diamond", {"x": 7}, id="later-1")
        assert waiter.result(WAIT_S) == DIAMOND_OUTPUT


def test_a_duplicate_start_gives_the_real_result(client: kflow.Client, runtime: Runtime) -> None:
    first = client.start("gated", id="dup-1")
    wait_for(first, StepScheduled, kind="approval")
    while_running = client.start("gated", id="dup-1")
    first.signal("gate", {"approved": True, "by": "di"})
    assert first.result(timeout=WAIT_S) == {"after": {"by": "di"}}
    assert while_running.result(timeout=WAIT_S) == {"after": {"by": "di"}}
    events = list(while_running.events(timeout=WAIT_S))
    assert_one_run(events)
    assert [type(e) for e in events].count(DuplicateStartIgnored) == 1
    with kflow.Client(runtime.settings) as fresh:  # the run is only history to this one
        after_the_end = fresh.start("gated", id="dup-1")
        assert after_the_end.result(timeout=WAIT_S) == {"after": {"by": "di"}}
        assert list(after_the_end.events()) == events
    # the log: the run (with the first duplicate's notice), then the second's notice
    log = the_log(runtime.settings, "dup-1")
    assert log[:-1] == events and isinstance(log[-1], DuplicateStartIgnored)


def test_an_idempotency_key_maps_to_one_workflow(client: kflow.Client) -> None:
    one = client.start("diamond", {"x": 7}, idempotency_key="order-7")
    two = client.start("diamond", {"x": 7}, idempotency_key="order-7")
    assert one.workflow_id == two.workflow_id
    assert one.result(timeout=WAIT_S) == two.result(timeout=WAIT_S) == DIAMOND_OUTPUT


def test_many_handles_wait_at_once_on_one_consumer(
    client: kflow.Client, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []

    events_topic = topic_names(runtime.prefix).events

    class CountingReader(bus_reader.TopicReader):
        def __init__(self, bootstrap: str, topic: str, **kwargs: Any) -> None:
            if topic == events_topic:
                opened.append(self)
            super().__init__(bootstrap, topic, **kwargs)

    monkeypatch.setattr(client_watcher, "TopicReader", CountingReader)
    monkeypatch.setattr(bus_reader, "TopicReader", CountingReader)  # history reads
    with kflow.Client(runtime.settings, actor="test") as many:
        handles = [many.start("diamond", {"x": 7}) for _ in range(120)]
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda h: h.result(WAIT_S), handles))
    assert results == [DIAMOND_OUTPUT] * 120
    assert len(opened) == 1, f"{len(opened)} readers of the events topic"


def test_close_wakes_a_waiting_handle_with_client_closed(runtime: Runtime) -> None:
    runtime.apply({"name": "gated-alone", "nodes": [{"id": "gate", "type": "approval"}]})
    closing = kflow.Client(runtime.settings)
    handle = closing.start("gated-alone")
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            handle.result(timeout=WAIT_S)
        except BaseException as e:
            outcome.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_for(handle, StepScheduled)
    closing.close()
    waiter.join(WAIT_S)
    assert [type(e) for e in outcome] == [kflow.client.ClientClosed]
    with pytest.raises(kflow.client.ClientClosed):
        closing.start("gated-alone")


def test_a_missing_events_topic_is_named_with_the_fix(stack: Settings) -> None:
    settings = stack.model_copy(update={"topic_prefix": "no-such-prefix-for-client"})
    with kflow.Client(settings) as lost, pytest.raises(ReaderError, match="kflow topics create"):
        lost.start("diamond")


def test_commands_with_wait_return_what_applied_them_or_raise_the_rejection(
    client: kflow.Client,
) -> None:
    handle = client.start("gated")
    assert isinstance(handle.answer(timeout=WAIT_S), WorkflowStarted)
    wait_for(handle, StepScheduled, kind="approval")
    paused = handle.pause("vendor", wait=WAIT_S)
    assert isinstance(paused, WorkflowPaused) and paused.reason == "vendor"
    with pytest.raises(kflow.CommandRejected) as twice:
        handle.pause(wait=WAIT_S)
    assert (twice.value.command, twice.value.code) == ("PauseWorkflow", "not_applicable")
    handle.cancel(wait=WAIT_S)
    with pytest.raises(kflow.CommandRejected) as finished:
        handle.signal("gate", {"approved": True}, wait=WAIT_S)
    assert finished.value.code == "workflow_finished" and "cancelled" in finished.value.reason
    rejected = client.start("no-such-definition").answer(timeout=WAIT_S)
    assert isinstance(rejected, WorkflowRejected) and rejected.code == "unknown_definition"


def test_retry_reopens_a_cancelled_run_and_its_handle_waits_for_the_new_end(
    client: kflow.Client, runtime: Runtime
) -> None:
    handle = client.start("gated")
    wait_for(handle, StepScheduled, kind="approval")
    handle.cancel("too early")
    with pytest.raises(kflow.WorkflowCancelled):
        handle.result(timeout=WAIT_S)
    reopened = handle.retry("now")
    wait_for(reopened, StepScheduled, kind="approval", attempt=2)
    reopened.signal("gate", {"approved": True, "by": "ana"})
    assert reopened.result(timeout=WAIT_S) == {"after": {"by": "ana"}}
    # a handle from get_handle follows the reopened run to its new end too
    assert client.get_handle(handle.workflow_id).result(timeout=WAIT_S) == {"after": {"by": "ana"}}
    prepared = [
        e for e in the_log(runtime.settings, handle.workflow_id)
        if isinstance(e, StepScheduled) and e.node_id == "prepare"
    ]  # fmt: skip
    assert len(prepared) == 1  # the completed step was not scheduled again


def test_retry_of_a_completed_run_raises_command_refused(client: kflow.Client) -> None:
    handle = client.start("diamond", {"x": 1})
    handle.result(timeout=WAIT_S)
    with pytest.raises(kflow.CommandRejected) as refused:
        handle.retry().result(timeout=WAIT_S)
    assert refused.value.code == "not_retryable"
    assert "completed" in refused.value.reason
