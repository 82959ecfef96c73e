"""Handles on one workflow: wait for its result, follow its events, send it commands."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from kflow.client.core import ClientCore
from kflow.client.follow import Answer, Follower
from kflow.client.tracker import (
    Ready,
    Step,
    Tracker,
    answered,
    deadline_of,
    outcome,
    publish_tracked,
    publish_tracked_async,
    remaining,
)
from kflow.client.watcher import LoopWake
from kflow.core.errors import KflowError
from kflow.core.events import Event
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
)


def _ended(follower: Follower) -> bool:
    return follower.done


def _more_than(count: int) -> Ready:
    return lambda follower: len(follower.run) > count or follower.done


def _history_read(follower: Follower) -> bool:
    return not follower.needs_history


def _answered(follower: Follower) -> bool:
    return follower.answer is not None or follower.done


class _Base:
    def __init__(self, core: ClientCore, tracker: Tracker) -> None:
        self._core = core
        self._tracker = tracker
        self.workflow_id = tracker.workflow_id
        weakref.finalize(self, tracker.release)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.workflow_id!r})"

    def _signal(self, name: str, payload: Any) -> Input:
        return SignalWorkflow(workflow_id=self.workflow_id, name=name, payload=payload)

    def _start_answer(self) -> Event:
        follower = self._tracker.follower
        if follower.command_id is None:
            raise KflowError("only a handle from start() has an answer to wait for")
        answer = follower.answer or follower.final
        assert answer is not None  # the wait for it returned
        return answer.event


class WorkflowHandle(_Base):
    """One workflow, seen from a :class:`~kflow.client.client.Client`.

    Waiting never polls on a timer: the client's one watcher wakes the handle as soon as
    the event is readable. A handle from ``get_handle`` reads its workflow's partition from
    the start the first time it waits, then follows it live.
    """

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end; its output if it completed.

        Raises :class:`~kflow.client.errors.WorkflowFailed`, ``WorkflowCancelled`` or
        ``WorkflowRejected`` for the other endings, ``WaitTimeout`` after ``timeout`` s.
        """
        self._wait(_ended, deadline_of(timeout), final_only=True, what=("no end", timeout))
        return outcome(self._tracker.final())

    def answer(self, timeout: float | None = None) -> Event:
        """The orchestrator's answer to this handle's start (a handle from ``start()`` only):
        ``WorkflowStarted``, ``DuplicateStartIgnored`` (the id exists) or ``WorkflowRejected``
        (returned, not raised). ``WaitTimeout`` after ``timeout`` s."""
        if self._tracker.follower.command_id is None:
            return self._start_answer()  # raises
        self._wait(_answered, deadline_of(timeout), final_only=False, what=("no answer", timeout))
        return self._start_answer()

    def events(self, *, follow: bool = True, timeout: float | None = None) -> Iterator[Event]:
        """The workflow's events in log order, from its first (``WorkflowStarted``).

        With ``follow`` it yields each event as it happens and stops after the final one;
        without, it stops after the events in the log now. ``timeout`` bounds the whole
        iteration (then ``WaitTimeout``).
        """
        deadline = deadline_of(timeout)
        seen = 0
        while True:
            ready = _more_than(seen) if follow else _history_read
            self._wait(ready, deadline, final_only=False, what=("no further event", timeout))
            batch, done = self._tracker.snapshot(seen)
            yield from batch
            seen += len(batch)
            if done or not follow:
                return

    def signal(
        self,
        name: str,
        payload: Any = None,
        *,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Event | None:
        """Send a signal to the waiting step ``name`` (e.g. ``{"approved": True}``).

        Every command returns once Kafka has it. With ``wait`` (seconds) it also waits for
        the orchestrator's answer: the event that applied it (``WorkflowSignalled`` ...) is
        returned, a refusal raises :class:`~kflow.client.errors.CommandRejected` (code and
        reason), no answer in time ``WaitTimeout``. A command repeating the
        ``idempotency_key`` of one the workflow applied is not applied again; its answer is
        an ``InputRejected`` notice with code ``duplicate_command`` (returned; ADR 0018).
        """
        return self._send(self._signal(name, payload), wait, idempotency_key)

    def pause(
        self, reason: str = "", *, wait: float | None = None, idempotency_key: str | None = None
    ) -> Event | None:
        """Ask the orchestrator to schedule no new steps until :meth:`resume` (``wait`` and
        ``idempotency_key``: see :meth:`signal`)."""
        command = PauseWorkflow(workflow_id=self.workflow_id, reason=reason)
        return self._send(command, wait, idempotency_key)

    def resume(
        self, *, wait: float | None = None, idempotency_key: str | None = None
    ) -> Event | None:
        """Resume a paused workflow (``wait`` and ``idempotency_key``: see :meth:`signal`)."""
        return self._send(ResumeWorkflow(workflow_id=self.workflow_id), wait, idempotency_key)

    def cancel(
        self, reason: str = "", *, wait: float | None = None, idempotency_key: str | None = None
    ) -> Event | None:
        """Cancel the workflow; running steps are marked cancelled (``wait`` and
        ``idempotency_key``: see :meth:`signal`)."""
        command = CancelWorkflow(workflow_id=self.workflow_id, reason=reason)
        return self._send(command, wait, idempotency_key)

    def retry(self, reason: str = "", *, idempotency_key: str | None = None) -> WorkflowHandle:
        """Reopen the run if it failed or was cancelled (ADR 0082): its failed and cancelled
        steps run again as their next attempt, completed steps keep their results.

        Returns a handle on the reopened run: its ``result()`` waits for the run's next end,
        or raises :class:`~kflow.client.errors.CommandRejected` if the orchestrator refused
        the retry (e.g. ``not_retryable``: the run did not fail; ``retry_window_passed``).
        """
        command = RetryWorkflow(workflow_id=self.workflow_id, reason=reason)
        meta = self._core.meta(command, idempotency_key)
        return WorkflowHandle(self._core, publish_tracked(self._core, command, meta))

    def _send(
        self, command: Input, wait: float | None, idempotency_key: str | None = None
    ) -> Event | None:
        meta = self._core.meta(command, idempotency_key)
        publisher = self._core.publisher()
        if wait is None:
            publisher.publish(command, meta)
            return None
        answer = Answer(self.workflow_id, meta.event_id)
        watcher = self._core.watcher()
        sub = watcher.subscribe(answer)  # before sending: the answer cannot be missed
        try:
            publisher.publish(command, meta)
            woken = threading.Event()
            with watcher.lock:
                waiting = not answer.done and sub.error is None
                if waiting:
                    sub.add_waiter(woken.set)
            if waiting:
                woken.wait(wait)
            with watcher.lock:
                if not answer.done and sub.error is not None:
                    raise sub.error
                logged = answer.event
        finally:
            watcher.unsubscribe(sub)
        return answered(self.workflow_id, type(command).__name__, logged, wait)

    def _wait(
        self,
        ready: Ready,
        deadline: float | None,
        final_only: bool,
        what: tuple[str, float | None],
    ) -> None:
        tracker = self._tracker
        while True:
            woken = threading.Event()
            step = tracker.step(ready, woken.set, final_only)
            if step is Step.READY:
                return
            if step is Step.READ_HISTORY:
                tracker.read_history()
                continue
            if not woken.wait(remaining(deadline)):
                if tracker.gave_up(ready, woken.set):
                    return
                raise tracker.timeout(*what)


class AsyncWorkflowHandle(_Base):
    """:class:`WorkflowHandle` for asyncio, from an :class:`~kflow.client.client.AsyncClient`."""

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end; see :meth:`WorkflowHandle.result`."""
        await self._wait(_ended, deadline_of(timeout), final_only=True, what=("no end", timeout))
        return outcome(self._tracker.final())

    async def answer(self, timeout: float | None = None) -> Event:
        """The orchestrator's answer to this handle's start; see :meth:`WorkflowHandle.answer`."""
        if self._tracker.follower.command_id is None:
            return self._start_answer()  # raises
        deadline = deadline_of(timeout)
        await self._wait(_answered, deadline, final_only=False, what=("no answer", timeout))
        return self._start_answer()

    async def events(
        self, *, follow: bool = True, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        """The workflow's events; see :meth:`WorkflowHandle.events`."""
        deadline = deadline_of(timeout)
        seen = 0
        while True:
            ready = _more_than(seen) if follow else _history_read
            await self._wait(ready, deadline, final_only=False, what=("no further event", timeout))
            batch, done = self._tracker.snapshot(seen)
            for event in batch:
                yield event
            seen += len(batch)
            if done or not follow:
                return

    async def signal(
        self,
        name: str,
        payload: Any = None,
        *,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Event | None:
        """Send a signal to the waiting step ``name``; see :meth:`WorkflowHandle.signal`."""
        return await self._send(self._signal(name, payload), wait, idempotency_key)

    async def pause(
        self, reason: str = "", *, wait: float | None = None, idempotency_key: str | None = None
    ) -> Event | None:
        """Ask the orchestrator to schedule no new steps until :meth:`resume`."""
        command = PauseWorkflow(workflow_id=self.workflow_id, reason=reason)
        return await self._send(command, wait, idempotency_key)

    async def resume(
        self, *, wait: float | None = None, idempotency_key: str | None = None
    ) -> Event | None:
        """Resume a paused workflow."""
        command = ResumeWorkflow(workflow_id=self.workflow_id)
        return await self._send(command, wait, idempotency_key)

    async def cancel(
        self, reason: str = "", *, wait: float | None = None, idempotency_key: str | None = None
    ) -> Event | None:
        """Cancel the workflow (running steps are marked cancelled)."""
        command = CancelWorkflow(workflow_id=self.workflow_id, reason=reason)
        return await self._send(command, wait, idempotency_key)

    async def retry(
        self, reason: str = "", *, idempotency_key: str | None = None
    ) -> AsyncWorkflowHandle:
        """Reopen a failed or cancelled run; see :meth:`WorkflowHandle.retry`."""
        command = RetryWorkflow(workflow_id=self.workflow_id, reason=reason)
        meta = self._core.meta(command, idempotency_key)
        tracker = await publish_tracked_async(self._core, command, meta)
        return AsyncWorkflowHandle(self._core, tracker)

    async def _send(
        self, command: Input, wait: float | None, idempotency_key: str | None = None
    ) -> Event | None:
        meta = self._core.meta(command, idempotency_key)
        publisher = self._core.publisher()
        if wait is None:
            await publisher.publish_async(command, meta)
            return None
        answer = Answer(self.workflow_id, meta.event_id)
        watcher = self._core.watcher() if self._core.watching else None
        if watcher is None:
            watcher = await asyncio.to_thread(self._core.watcher)  # starting it blocks
        sub = watcher.subscribe(answer)
        try:
            await publisher.publish_async(command, meta)
            loop = asyncio.get_running_loop()
            woken: asyncio.Future[None] = loop.create_future()
            with watcher.lock:
                waiting = not answer.done and sub.error is None
                if waiting:
                    sub.add_waiter(LoopWake(loop, woken))
            if waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, wait)
            with watcher.lock:
                if not answer.done and sub.error is not None:
                    raise sub.error
                logged = answer.event
        finally:
            watcher.unsubscribe(sub)
        return answered(self.workflow_id, type(command).__name__, logged, wait)

    async def _wait(
        self,
        ready: Ready,
        deadline: float | None,
        final_only: bool,
        what: tuple[str, float | None],
    ) -> None:
        tracker = self._tracker
        if not tracker.subscribed:
            await asyncio.to_thread(tracker.subscribe)  # may start the watcher: blocks
        loop = asyncio.get_running_loop()
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            wake = LoopWake(loop, woken)
            step = tracker.step(ready, wake, final_only)
            if step is Step.READY:
                return
            if step is Step.READ_HISTORY:
                await asyncio.to_thread(tracker.read_history)
                continue
            try:
                await asyncio.wait_for(woken, remaining(deadline))
            except TimeoutError:
                if tracker.gave_up(ready, wake):
                    return
                raise tracker.timeout(*what) from None
            except BaseException:
                tracker.gave_up(ready, wake)
                raise
