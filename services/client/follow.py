"""Which of a workflow id's events a handle follows, and when it has ended (pure: no I/O).

A handle sees its workflow's events from two sources: *live*, from the client's one
watcher, for everything committed after the handle subscribed; and *history*, read from
the start of the workflow's partition once, when the live events do not suffice. Both are
in log order; a record is identified by its offset, so the overlap is dropped.

A workflow id can have more than one *run* (a start is remembered only for the closed
window, ADR 0032), so the follower picks one:

* a handle from ``start()`` follows the run its own StartWorkflow produced (the answer's
  ``causation_id`` is the command's event id): the run it started, its rejection, or, for a
  duplicate start, the run that already existed (whose start may be in the history);
* a handle from ``get_handle()`` follows the latest run in the history, or, when there is
  none yet, the first one that starts;
* a handle from ``retry()`` follows the run from the ``WorkflowRetried`` its RetryWorkflow
  caused, or ends at once with the notice refusing it (ADR 0082).

A ``WorkflowRetried`` after a run's final event reopens it: a handle that follows the run
waits for its next end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from kflow.core.events import (
    FINAL_TYPES,
    DuplicateStartIgnored,
    Event,
    InputRejected,
    WorkflowRejected,
    WorkflowRetried,
    WorkflowStarted,
)

STARTED = WorkflowStarted.__name__
REJECTED = WorkflowRejected.__name__
DUPLICATE = DuplicateStartIgnored.__name__
RETRIED = WorkflowRetried.__name__
REFUSED = InputRejected.__name__
_ANSWERS = frozenset({STARTED, REJECTED, DUPLICATE, RETRIED, REFUSED})
_FINAL = frozenset(t.__name__ for t in FINAL_TYPES)


class Logged:
    """One event of the followed workflow id: its type name, offset and causation id.

    The event itself is converted from its record only when asked for (:attr:`event`): a
    handle that only waits for the end never pays for the events in between.
    """

    __slots__ = ("_convert", "_event", "causation_id", "offset", "type")

    def __init__(
        self,
        type: str,
        offset: int,
        causation_id: str | None,
        convert: Callable[[], Event],
    ) -> None:
        self.type = type
        self.offset = offset
        self.causation_id = causation_id
        self._convert = convert
        self._event: Event | None = None

    @classmethod
    def of(cls, event: Event, offset: int, causation_id: str | None) -> Logged:
        """An already converted event."""
        logged = cls(type(event).__name__, offset, causation_id, lambda: event)
        logged._event = event
        return logged

    @property
    def event(self) -> Event:
        """The core event (converted on first use; may raise ``DecodeError``)."""
        if self._event is None:
            self._event = self._convert()
        return self._event


class Followed(Protocol):
    """What the watcher hands a workflow id's events to (:class:`Follower`, :class:`Answer`)."""

    workflow_id: str
    needs_history: bool

    @property
    def done(self) -> bool: ...

    def live(self, logged: Logged) -> bool: ...


class Answer:
    """The orchestrator's answer to one command: the first event it caused (``event``).

    Every event the orchestrator writes for a command carries the command's event id as its
    causation id; the first is the applied change (``WorkflowPaused`` ...) or the refusal
    (``InputRejected``). Only events after subscribing are seen: subscribe before sending.
    """

    def __init__(self, workflow_id: str, command_id: str) -> None:
        self.workflow_id = workflow_id
        self.command_id = command_id
        self.needs_history = False
        self.event: Logged | None = None

    @property
    def done(self) -> bool:
        """The answer arrived."""
        return self.event is not None

    def live(self, logged: Logged) -> bool:
        """Take ``logged`` if it is the answer; True when it was."""
        if self.event is None and logged.causation_id == self.command_id:
            self.event = logged
            return True
        return False


class Follower:
    """The run of one handle: its events so far (``run``) and its final event (``final``)."""

    def __init__(self, workflow_id: str, command_id: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.command_id = command_id
        self.run: list[Logged] = []
        self.final: Logged | None = None
        self.answer: Logged | None = None
        """The orchestrator's answer to the handle's start (its causation id is
        ``command_id``): WorkflowStarted, WorkflowRejected or DuplicateStartIgnored."""
        self.needs_history = command_id is None
        """True while the history must be read before the run can be told."""
        self._history_applied = False
        self._placed = False
        self._history: list[Logged] = []
        self._pending: list[Logged] = []
        self._last_offset = -1

    @property
    def done(self) -> bool:
        """The run ended (or its start was rejected): nothing more will be added."""
        return self.final is not None

    def live(self, logged: Logged) -> bool:
        """Apply an event the watcher saw; True when ``run``, ``final`` or ``needs_history``
        changed (a waiter must look again)."""
        if logged.offset <= self._last_offset or (self.done and logged.type != RETRIED):
            return False
        self._last_offset = logged.offset
        if self._placed:
            return self._append(logged)
        self._pending.append(logged)
        needed = self.needs_history
        return self._place() or self.needs_history != needed

    def history(self, records: Sequence[Logged]) -> bool:
        """Apply this workflow id's events read from the start of its partition, in log order.

        Every record committed before the handle subscribed is among them; later ones may be
        too (they are dropped from, or not taken again by, the live side).
        """
        if self._history_applied:
            return False
        self._history_applied = True
        self.needs_history = False
        if self._placed:
            return False
        top = records[-1].offset if records else -1
        self._history = list(records)
        self._pending = [r for r in self._pending if r.offset > top]
        self._last_offset = max(self._last_offset, top)
        return self._place()

    # -- internals -------------------------------------------------------------------------

    def _place(self) -> bool:
        if self.needs_history:
            return False
        run = self._latest_run() if self.command_id is None else self._answered_run()
        if run is None:
            return False
        self._placed = True
        self._history = []
        self._pending = []
        for logged in run:
            self._append(logged)
        return True

    def _latest_run(self) -> list[Logged] | None:
        history = self._history
        for i in range(len(history) - 1, -1, -1):
            if history[i].type == STARTED:
                return history[i:] + self._pending
        for i in range(len(history) - 1, -1, -1):
            if history[i].type == REJECTED:
                return [history[i]]
        for i, logged in enumerate(self._pending):
            if logged.type in (STARTED, REJECTED):
                return self._pending[i:]
        self._pending = []  # nothing of a run yet: what came before cannot belong to one
        return None

    def _answered_run(self) -> list[Logged] | None:
        seen = self._history + self._pending
        answer = next(
            (
                i
                for i, logged in enumerate(seen)
                if logged.causation_id == self.command_id and logged.type in _ANSWERS
            ),
            None,
        )
        if answer is None:
            return None
        self.answer = seen[answer]
        if seen[answer].type == REFUSED:
            return [seen[answer]]
        if seen[answer].type != DUPLICATE:
            return seen[answer:]
        start = next((i for i in range(answer - 1, -1, -1) if seen[i].type == STARTED), None)
        if start is not None:
            return seen[start:]
        if not self._history_applied:
            self.needs_history = True  # the existing run started before we subscribed
            return None
        return seen[answer:]  # its start is no longer in the log (retention): follow from here

    def _append(self, logged: Logged) -> bool:
        if self.done and logged.type != RETRIED:
            return False
        answer = not self.run
        self.run.append(logged)
        if logged.type == RETRIED:
            self.final = None  # the run was reopened: it ends again later
        elif logged.type in _FINAL or (answer and logged.type == REFUSED):
            self.final = logged
        return True
