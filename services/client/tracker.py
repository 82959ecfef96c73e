"""One handle's subscription: how its waits are woken, and when its history is read.

The sync and async handles share this; they differ only in how they block (a thread
event, or a future resolved from the watcher thread).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

from kflow.bus.contracts import EnvelopeMeta
from kflow.client.core import ClientCore
from kflow.client.errors import (
    CommandRejected,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowRejected,
)
from kflow.client.follow import Follower, Logged
from kflow.client.watcher import EventWatcher, Subscription, Wake, ring
from kflow.core import events as ev
from kflow.core.errors import KflowError
from kflow.core.inputs import Input

Ready = Callable[[Follower], bool]


class Step(Enum):
    """What a waiter does next."""

    READY = "ready"
    READ_HISTORY = "read_history"
    WAIT = "wait"


def deadline_of(timeout: float | None) -> float | None:
    """The monotonic time a wait of ``timeout`` seconds ends (``None``: never)."""
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (``None``: no limit)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def outcome(final: ev.Event) -> Any:
    """A completed run's output (a plain JSON value), or the typed error of other endings."""
    if isinstance(final, ev.WorkflowCompleted):
        return final.output.value
    if isinstance(final, ev.WorkflowFailed):
        raise WorkflowFailed(final.workflow_id, final.reason, final.step_key)
    if isinstance(final, ev.WorkflowCancelled):
        raise WorkflowCancelled(final.workflow_id, final.reason)
    if isinstance(final, ev.WorkflowRejected):
        raise WorkflowRejected(final.workflow_id, final.code, final.reason)
    if isinstance(final, ev.InputRejected):
        raise CommandRejected(final.workflow_id, final.input_type, final.code, final.reason)
    raise KflowError(f"{type(final).__name__} is not a final event")


DUPLICATE_COMMAND = "duplicate_command"
"""The code of the answer to a command whose idempotency key was applied already."""


def answered(workflow_id: str, command: str, answer: Logged | None, timeout: float) -> ev.Event:
    """The event that applied ``command`` (or the ``duplicate_command`` notice: an earlier one
    with its idempotency key was applied); raises ``CommandRejected`` for a refusal and
    ``WaitTimeout`` when no answer came within ``timeout`` s."""
    if answer is None:
        raise WaitTimeout(
            f"workflow {workflow_id}: no answer from the orchestrator within {timeout:g} s to "
            f"{command}; the command is delivered and applies once an orchestrator reads it "
            "(is `kflow run orchestrator` running?)"
        )
    event = answer.event
    if isinstance(event, ev.InputRejected) and event.code != DUPLICATE_COMMAND:
        raise CommandRejected(workflow_id, command, event.code, event.reason)
    return event


class Tracker:
    """The follower of one handle and its subscription to the client's watcher."""

    def __init__(self, core: ClientCore, workflow_id: str, command_id: str | None = None) -> None:
        self.core = core
        self.workflow_id = workflow_id
        self.follower = Follower(workflow_id, command_id)
        self._watcher: EventWatcher | None = None
        self._sub: Subscription | None = None
        self._sub_lock = threading.Lock()
        self._history_lock = threading.Lock()

    @property
    def subscribed(self) -> bool:
        """Events reach this tracker (subscribing does not block)."""
        return self._sub is not None

    def subscribe(self) -> tuple[EventWatcher, Subscription]:
        """Subscribe to the watcher (starting it first if needed: that blocks)."""
        with self._sub_lock:
            if self._watcher is None or self._sub is None:
                watcher = self.core.watcher()
                self._sub = watcher.subscribe(self.follower)
                self._watcher = watcher
            return self._watcher, self._sub

    def release(self) -> None:
        """Unsubscribe (the handle is gone)."""
        if self._watcher is not None and self._sub is not None:
            self._watcher.unsubscribe(self._sub)

    def step(self, ready: Ready, wake: Wake, final_only: bool) -> Step:
        """Under the watcher lock: done waiting, read the history first, or wait for ``wake``."""
        watcher, sub = self.subscribe()
        with watcher.lock:
            if ready(self.follower):
                return Step.READY
            if sub.error is not None:
                raise sub.error
            if self.follower.needs_history:
                return Step.READ_HISTORY
            sub.add_waiter(wake, final_only)
            return Step.WAIT

    def gave_up(self, ready: Ready, wake: Wake) -> bool:
        """A wait timed out: forget its waiter; True if it became ready meanwhile."""
        watcher, sub = self.subscribe()
        with watcher.lock:
            sub.remove_waiter(wake)
            return ready(self.follower)

    def read_history(self) -> None:
        """Read the workflow's partition from its start and hand it to the follower (blocks)."""
        watcher, sub = self.subscribe()
        lock = watcher.lock
        with self._history_lock:
            with lock:
                if not self.follower.needs_history:
                    return
            records = self.core.history(self.workflow_id)
            woken: list[Wake] = []
            with lock:
                if self.follower.history(records):
                    sub.notify(woken)
            ring(woken)

    def snapshot(self, start: int) -> tuple[list[ev.Event], bool]:
        """The run's events from index ``start``, and whether the run has ended."""
        watcher, _sub = self.subscribe()
        with watcher.lock:
            run, done = self.follower.run[start:], self.follower.done
        return [logged.event for logged in run], done

    def final(self) -> ev.Event:
        """The final event (only once a wait for it returned)."""
        watcher, _sub = self.subscribe()
        with watcher.lock:
            final = self.follower.final
        if final is None:
            raise KflowError(f"workflow {self.workflow_id} has not ended yet")
        return final.event

    def timeout(self, what: str, timeout: float | None) -> WaitTimeout:
        """The error of a wait for ``what`` that ran out."""
        return WaitTimeout(
            f"workflow {self.workflow_id}: {what} within {timeout:g} s; it may still come "
            "(wait again, or look at `kflow events " + self.workflow_id + "`)"
        )


def publish_tracked(core: ClientCore, command: Input, meta: EnvelopeMeta) -> Tracker:
    """Send ``command`` with a tracker on its workflow subscribed first, so none of the
    answer can be missed; the tracker is released if the command was not delivered."""
    core.check_can_send()
    tracker = Tracker(core, command.workflow_id, meta.event_id)
    tracker.subscribe()
    try:
        core.publisher().publish(command, meta)
    except BaseException:
        tracker.release()
        raise
    return tracker


async def publish_tracked_async(core: ClientCore, command: Input, meta: EnvelopeMeta) -> Tracker:
    """:func:`publish_tracked` from a coroutine (subscribing may start the watcher, which
    blocks: then it runs on a thread)."""
    core.check_can_send()
    tracker = Tracker(core, command.workflow_id, meta.event_id)
    if core.watching:
        tracker.subscribe()
    else:
        await asyncio.to_thread(tracker.subscribe)
    try:
        await core.publisher().publish_async(command, meta)
    except BaseException:
        tracker.release()
        raise
    return tracker
