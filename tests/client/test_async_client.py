"""kflow.AsyncClient on the real stack: the same behaviour as the blocking client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import kflow
from kflow.bus import reader as bus_reader
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
)
from tests.client.conftest import DIAMOND_OUTPUT, TEST_QUEUES, Runtime
from tests.client.test_client import WAIT_S, assert_one_run, the_log

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]


async def wait_for(handle: kflow.AsyncWorkflowHandle, type_: type[Event], **fields: Any) -> Event:
    """The first event of type ``type_`` (with ``fields``) the handle yields."""
    async for event in handle.events(timeout=WAIT_S):
        if isinstance(event, type_) and all(getattr(event, k) == v for k, v in fields.items()):
            return event
    raise AssertionError(f"{handle.workflow_id} ended without {type_.__name__} {fields}")


async def all_events(handle: kflow.AsyncWorkflowHandle, follow: bool = True) -> list[Event]:
    return [e async for e in handle.events(follow=follow, timeout=WAIT_S)]


async def test_endings_give_the_output_or_the_typed_error(async_client: kflow.AsyncClient) -> None:
    completed = await async_client.start("diamond", {"x": 7})
    failed = await async_client.start("failing")
    cancelled = await async_client.start("gated")
    rejected = await async_client.start("no-such-definition")
    assert await completed.result(timeout=WAIT_S) == DIAMOND_OUTPUT
    with pytest.raises(kflow.WorkflowFailed, match="no way"):
        await failed.result(timeout=WAIT_S)
    await wait_for(cancelled, StepScheduled, kind="approval")
    await cancelled.cancel("changed my mind")
    with pytest.raises(kflow.WorkflowCancelled) as why:
        await cancelled.result(timeout=WAIT_S)
    assert why.value.reason == "changed my mind"
    with pytest.raises(kflow.WorkflowRejected) as refused:
        await rejected.result(timeout=WAIT_S)
    assert refused.value.code == "unknown_definition"
    assert [type(e) for e in await all_events(rejected)] == [WorkflowRejected]


async def test_signal_pause_and_resume(async_client: kflow.AsyncClient) -> None:
    handle = await async_client.start("gated")
    await wait_for(handle, StepScheduled, kind="approval")
    await handle.pause()
    await wait_for(handle, WorkflowPaused)
    await handle.signal("gate", {"approved": True, "by": "ed"})
    await wait_for(handle, StepSucceeded, step_key=f"{handle.workflow_id}/gate")
    await handle.resume()
    assert await handle.result(timeout=WAIT_S) == {"after": {"by": "ed"}}
    events = await all_events(handle)
    types = [type(e) for e in events]
    after = next(
        i for i, e in enumerate(events) if isinstance(e, StepScheduled) and e.node_id == "after"
    )
    assert types.index(WorkflowPaused) < types.index(WorkflowResumed) < after


async def test_events_and_get_handle_of_a_finished_workflow(
    async_client: kflow.AsyncClient, runtime: Runtime
) -> None:
    handle = await async_client.start("diamond", {"x": 7})
    followed = await all_events(handle)
    assert_one_run(followed)
    assert isinstance(followed[-1], WorkflowCompleted)
    assert followed == the_log(runtime.settings, handle.workflow_id)
    async with kflow.AsyncClient(runtime.settings) as fresh:
        finished = fresh.get_handle(handle.workflow_id)
        assert await finished.result(timeout=WAIT_S) == DIAMOND_OUTPUT
        assert await all_events(finished, follow=False) == followed


async def test_a_duplicate_start_gives_the_real_result(async_client: kflow.AsyncClient) -> None:
    first = await async_client.start("gated", id="adup-1")
    await wait_for(first, StepScheduled, kind="approval")
    second = await async_client.start("gated", id="adup-1")
    await first.signal("gate", {"approved": True, "by": "fe"})
    results = await asyncio.gather(first.result(WAIT_S), second.result(WAIT_S))
    assert list(results) == [{"after": {"by": "fe"}}] * 2
    assert DuplicateStartIgnored in [type(e) for e in await all_events(second)]


async def test_many_handles_are_awaited_together_on_one_consumer(
    runtime: Runtime, async_client: kflow.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []
    events_topic = topic_names(runtime.prefix).events

    class CountingReader(bus_reader.TopicReader):
        def __init__(self, bootstrap: str, topic: str, **kwargs: Any) -> None:
            if topic == events_topic:
                opened.append(self)
            super().__init__(bootstrap, topic, **kwargs)

    monkeypatch.setattr(client_watcher, "TopicReader", CountingReader)
    monkeypatch.setattr(bus_reader, "TopicReader", CountingReader)
    async with kflow.AsyncClient(runtime.settings, actor="test") as many:
        handles = await asyncio.gather(*(many.start("diamond", {"x": 7}) for _ in range(150)))
        results = await asyncio.gather(*(h.result(WAIT_S) for h in handles))
    assert results == [DIAMOND_OUTPUT] * 150
    assert len({h.workflow_id for h in handles}) == 150
    assert len(opened) == 1, f"{len(opened)} readers of the events topic"


async def test_async_commands_with_wait_report_the_answer(async_client: kflow.AsyncClient) -> None:
    handle = await async_client.start("gated")
    await wait_for(handle, StepScheduled, kind="approval")
    assert isinstance(await handle.pause(wait=WAIT_S), WorkflowPaused)
    assert isinstance(await handle.resume(wait=WAIT_S), WorkflowResumed)
    with pytest.raises(kflow.CommandRejected, match="no_waiting_step"):
        await handle.signal("nope", {"approved": True}, wait=WAIT_S)
    duplicate = await async_client.start("gated", id=handle.workflow_id)
    assert isinstance(await duplicate.answer(timeout=WAIT_S), DuplicateStartIgnored)


async def test_retry_reopens_a_cancelled_run(async_client: kflow.AsyncClient) -> None:
    handle = await async_client.start("gated")
    await wait_for(handle, StepScheduled, kind="approval")
    await handle.cancel("too early")
    with pytest.raises(kflow.WorkflowCancelled):
        await handle.result(timeout=WAIT_S)
    reopened = await handle.retry("now")
    await wait_for(reopened, StepScheduled, kind="approval", attempt=2)
    await reopened.signal("gate", {"approved": True, "by": "bo"})
    assert await reopened.result(timeout=WAIT_S) == {"after": {"by": "bo"}}
    with pytest.raises(kflow.CommandRejected, match="not_retryable"):
        await (await reopened.retry()).result(timeout=WAIT_S)
