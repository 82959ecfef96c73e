"""The client's one reader of ``{prefix}.events``: a thread that hands each event to the
handles following its workflow id.

It starts at the end of every partition and is ready once it has reached that end, so
everything committed after :meth:`EventWatcher.subscribe` returns reaches the subscription:
a handle subscribes before its StartWorkflow is sent and misses nothing. Records of
workflow ids nobody follows are skipped without being decoded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from kflow.bus.contracts import decode
from kflow.bus.errors import DecodeError
from kflow.bus.reader import RawRecord, TopicReader
from kflow.client.errors import ClientClosed
from kflow.client.follow import Follower, Logged
from kflow.core.errors import KflowError
from kflow.core.events import Event

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
"""How long the watcher may take to reach the end of the events topic when it starts."""


def logged_event(record: RawRecord) -> Logged | None:
    """The event in an events-topic record (``None`` for a tombstone or a non-event)."""
    if record.value is None:
        return None
    try:
        envelope = decode(record.value)
    except DecodeError as e:
        log.warning("skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, e)
        return None
    if not isinstance(envelope.body, Event):
        return None
    return Logged(envelope.body, record.offset, envelope.causation_id)


class Subscription:
    """A follower registered with the watcher, and the waiters to wake when it changes.

    Every method must be called with the watcher's ``lock`` held.
    """

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.error: KflowError | None = None
        """Set when the watcher stopped (client closed, or the log could not be read)."""
        self._waiters: list[tuple[Callable[[], None], bool]] = []

    def add_waiter(self, wake: Callable[[], None], final_only: bool = False) -> None:
        """Call ``wake`` (once) at the next change, or only when the run ends."""
        self._waiters.append((wake, final_only))

    def remove_waiter(self, wake: Callable[[], None]) -> None:
        """Forget a waiter that stopped waiting."""
        self._waiters = [w for w in self._waiters if w[0] is not wake]

    def notify(self, everyone: bool = False) -> None:
        """Wake the waiters the change concerns."""
        follower = self.follower
        # a waiter for the end must also wake to read the history the end depends on
        all_ = everyone or follower.done or follower.needs_history or self.error is not None
        woken = [w for w in self._waiters if all_ or not w[1]]
        self._waiters = [w for w in self._waiters if not (all_ or not w[1])]
        for wake, _final_only in woken:
            wake()


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

    def subscribe(self, follower: Follower) -> Subscription:
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
        with self.lock:
            for key, logged in decoded:
                subs = self._subs.get(key or "")
                if logged is None or not subs:
                    continue
                for sub in list(subs):
                    if sub.follower.live(logged):
                        sub.notify()
                    if sub.follower.done:
                        self._drop(sub)

    def _drop(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.follower.workflow_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.follower.workflow_id]

    def _fail(self, error: KflowError) -> None:
        with self.lock:
            if self._error is None:
                self._error = error
            for subs in self._subs.values():
                for sub in subs:
                    sub.error = self._error
                    sub.notify(everyone=True)
            self._subs.clear()
