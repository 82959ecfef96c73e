"""Follow a small topic for the process's lifetime: read it to its end, then keep applying
new records on a daemon thread (the definitions registry and the principal directory)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from kflow.bus.clients import ConfigValue
from kflow.bus.reader import RawRecord, ReaderError, TopicReader
from kflow.core.errors import KflowError

log = logging.getLogger(__name__)

FOLLOW_OVERRIDES: Mapping[str, ConfigValue] = {"fetch.wait.max.ms": 50}
"""A follower lives as long as its process: idle fetches every 50 ms, not 10."""


class TopicFollower:
    """Hands every record of ``topic`` to ``apply``, in order, on one thread at a time.

    ``catch_up()`` blocks until every record present now has been applied; ``start()``
    follows updates on a daemon thread. Reader failures surface as ``error`` (the owner's
    error type) from the constructor and ``catch_up``; while following, they are logged
    and retried after a second (what was applied is kept).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        apply: Callable[[RawRecord], None],
        error: type[KflowError],
        *,
        overrides: Mapping[str, ConfigValue] = FOLLOW_OVERRIDES,
    ) -> None:
        self.topic = topic
        self._apply = apply
        self._error = error
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._reader = TopicReader(bootstrap, topic, overrides=dict(overrides))
        except ReaderError as e:
            raise error(str(e)) from e

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Apply every record up to the end of every partition (as of now)."""
        with self._lock:
            try:
                for record in self._reader.read_to_end(timeout_s):
                    self._apply(record)
            except ReaderError as e:
                raise self._error(str(e)) from e

    def start(self, name: str) -> None:
        """Follow new records on a daemon thread called ``name``."""
        self._thread = threading.Thread(target=self._follow, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following and close the reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._reader.close()

    def _follow(self) -> None:
        pause = 0.05
        while not self._stop.wait(pause):
            # take what has arrived without waiting under the lock: catch_up() needs it
            with self._lock:
                try:
                    records = self._reader.poll(0)
                    pause = 0 if records else 0.05
                except ReaderError as e:  # e.g. the topic is gone for now: keep what we have
                    log.error("following %s: %s; trying again in 1s", self.topic, e)
                    records, pause = [], 1.0
                for record in records:
                    self._apply(record)
