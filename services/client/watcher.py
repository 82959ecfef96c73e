"""The client's one reader of ``{prefix}.events``: a thread that hands each event to the
handles following its workflow id.

It starts at the end of every partition and is ready once it has reached that end, so
everything committed after :meth:`EventWatcher.subscribe` returns reaches the subscription:
a handle subscribes before its StartWorkflow is sent and misses nothing. Records of
workflow ids nobody follows are skipped without being decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial

from kflow.bus.contracts import EnvelopeHead, default_contracts
from kflow.bus.errors import DecodeError, DecodeFailure
from kflow.bus.reader import RawRecord, TopicReader
from kflow.client.errors import ClientClosed
from kflow.client.follow import Followed, Logged
from kflow.core.errors import KflowError
from kflow.core.events import EVENT_TYPES, Event

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
"""How long the watcher may take to reach the end of the events topic when it starts."""


def logged_event(record: RawRecord) -> Logged | None:
    """The event in an events-topic record (``None`` for a tombstone or a non-event).

    Only the envelope's routing fields are read here; the event is converted on demand.
    """
    if record.value is None:
        return None
    contracts = default_contracts()
    try:
        head = contracts.decode_head(record.value)
    except DecodeError as e:
        log.warning("skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, e)
        return None
    if head.type not in EVENT_TYPES:
        return None
    return Logged(head.type, record.offset, head.causation_id, partial(_event_of, head))


def _event_of(head: EnvelopeHead) -> Event:
    body = default_contracts().envelope_of(head).body
    if not isinstance(body, Event):  # decode_head said it is one: the schema guarantees it
        raise DecodeError(DecodeFailure.WRONG_TYPE, f"{head.type} is not an event")
    return body


Wake = Callable[[], None]
"""What a waiter gives to be woken (called once, from any thread)."""


class LoopWake:
    """Wakes a waiter in an event loop by resolving its future there.

    :func:`ring` hands all of one loop's wakes over in one call, so a batch of events that
    ends many waits costs the loop one wake-up, not one per waiter.
    """

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future

    def __call__(self) -> None:
        ring([self])

    def resolve(self) -> None:
        """In the loop: end the wait (unless it ended already)."""
        if not self.future.done():
            self.future.set_result(None)


def _resolve_all(wakes: list[LoopWake]) -> None:
    for wake in wakes:
        wake.resolve()


def ring(wakes: Iterable[Wake]) -> None:
    """Call each wake; the :class:`LoopWake` of one loop in one hop into that loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[LoopWake]] = {}
    for wake in wakes:
        if isinstance(wake, LoopWake):
            by_loop.setdefault(wake.loop, []).append(wake)
        else:
            wake()
    for loop, loop_wakes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed while they waited
            loop.call_soon_threadsafe(_resolve_all, loop_wakes)


class Subscription:
    """A follower registered with the watcher, and the waiters to wake when it changes.

    Every method must be called with the watcher's ``lock`` held.
    """

    def __init__(self, follower: Followed) -> None:
        self.follower = follower
        self.error: KflowError | None = None
        """Set when the watcher stopped (client closed, or the log could not be read)."""
        self._waiters: list[tuple[Wake, bool]] = []

    def add_waiter(self, wake: Wake, final_only: bool = False) -> None:
        """Call ``wake`` (once) at the next change, or only when the run ends."""
        self._waiters.append((wake, final_only))

    def remove_waiter(self, wake: Wake) -> None:
        """Forget a waiter that stopped waiting."""
        self._waiters = [w for w in self._waiters if w[0] is not wake]

    def notify(self, woken: list[Wake], everyone: bool = False) -> None:
        """Move the waiters the change concerns to ``woken`` (:func:`ring` them after
        releasing the lock)."""
        if not self._waiters:
            return
        follower = self.follower
        # a waiter for the end must also wake to read the history the end depends on
        all_ = everyone or follower.done or follower.needs_history or self.error is not None
        woken.extend(wake for wake, final_only in self._waiters if all_ or not final_only)
        self._waiters = [w for w in self._waiters if not (all_ or not w[1])]


class EventWatcher:
    """One ``read_committed`` consumer of ``topic`` shared by every handle of a client."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        # reentrant: a handle's finalizer (unsubscribe) may run in this thread, inside the lock
        self.lock = threading.RLock()
        self._subs: dict[str, set[Subscription]] = {}
        self._error: KflowError | None = None
        self._stop = threading.Event()
        self._reader = TopicReader(bootstrap, topic, start="end")
        try:
            for _ in self._reader.read_to_end(READY_TIMEOUT_S):
                pass  # nobody is subscribed yet: this only fixes where the watcher starts
        except BaseException:
            self._reader.close()
            raise
        self._thread = threading.Thread(target=self._run, name="kflow-event-watcher", daemon=True)
        self._thread.start()

    def subscribe(self, follower: Followed) -> Subscription:
        """Start handing ``follower`` its workflow's events (everything committed from now)."""
        with self.lock:
            if self._error is not None:
                raise self._error
            sub = Subscription(follower)
            self._subs.setdefault(follower.workflow_id, set()).add(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop handing ``sub`` events (its handle is gone)."""
        with self.lock:
            self._drop(sub)

    def close(self) -> None:
        """Stop the thread, release the consumer, wake every waiter with ClientClosed."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._reader.close()
        self._fail(ClientClosed("the client was closed"))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                records = self._reader.poll(0.2)
                if records:
                    self._dispatch(records)
        except KflowError as e:
            log.error("the event watcher stopped: %s", e)
            self._fail(e)
        except Exception as e:  # librdkafka errors: tell the waiters rather than hang them
            log.exception("the event watcher stopped")
            self._fail(KflowError(f"reading the events topic failed: {e}"))

    def _dispatch(self, records: Iterable[RawRecord]) -> None:
        with self.lock:
            wanted = [r for r in records if r.key is not None and r.key in self._subs]
        if not wanted:
            return
        decoded = [(r.key, logged_event(r)) for r in wanted]
        woken: list[Wake] = []
        with self.lock:
            for key, logged in decoded:
                subs = self._subs.get(key or "")
                if logged is None or not subs:
                    continue
                for sub in list(subs):
                    if sub.follower.live(logged):
                        sub.notify(woken)
                    if sub.follower.done:
                        self._drop(sub)
        ring(woken)

    def _drop(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.follower.workflow_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.follower.workflow_id]

    def _fail(self, error: KflowError) -> None:
        woken: list[Wake] = []
        with self.lock:
            if self._error is None:
                self._error = error
            for subs in self._subs.values():
                for sub in subs:
                    sub.error = self._error
                    sub.notify(woken, everyone=True)
            self._subs.clear()
        ring(woken)
