"""Per-transaction record counts, published to Prometheus only once the transaction commits."""

from __future__ import annotations

from collections import Counter

from kflow.observability.metrics import DLQ_RECORDS, EVENTS_IN, EVENTS_OUT


class BatchTally:
    """Records consumed, produced and dead-lettered in the open transaction.

    An aborted batch is processed again, so its counts are discarded rather than
    published; with an empty ``component`` nothing is ever published.
    """

    def __init__(self, component: str) -> None:
        self.component = component
        self._in: Counter[str] = Counter()
        self._out: Counter[str] = Counter()
        self._dead: Counter[str] = Counter()

    def consumed(self, topic: str) -> None:
        self._in[topic] += 1

    def produced(self, topic: str) -> None:
        self._out[topic] += 1

    def dead_lettered(self, source_topic: str) -> None:
        self._dead[source_topic] += 1

    def publish(self) -> None:
        """The transaction committed: add the counts to the metrics and start over."""
        if self.component:
            for topic, n in self._in.items():
                EVENTS_IN.labels(self.component, topic).inc(n)
            for topic, n in self._out.items():
                EVENTS_OUT.labels(self.component, topic).inc(n)
            for topic, n in self._dead.items():
                DLQ_RECORDS.labels(self.component, topic).inc(n)
        self.discard()

    def discard(self) -> None:
        """Forget the counts of an aborted (or not yet started) transaction."""
        self._in.clear()
        self._out.clear()
        self._dead.clear()
