"""The one way kflow reads a topic outside a consumer group's work loop.

A :class:`TopicReader` is a ``read_committed`` consumer assigned to chosen partitions
(never subscribed, never committing). It reads what is there now (:meth:`read_to_end`),
or keeps going as records arrive (:meth:`follow`). :func:`read_latest` folds a compacted
topic to the latest value per key; :func:`partition_for` says where a key lives.

"The end" is the partition end the broker reports to this reader (the last stable offset
for ``read_committed``), detected with librdkafka's partition-EOF events: comparing the
offset after the last record read with the high watermark never finishes on a
transactional log, whose last offset is a commit marker no reader is ever given.
:func:`record_ends` gives that "offset after the last record" for callers that wait for
someone else's stored offsets (e.g. a projector storing ``offset + 1``).
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from kflow.bus.admin import TopicAdminError, wait_until_stable
from kflow.bus.clients import ConfigValue, make_consumer
from kflow.bus.errors import BusError, is_fatal
from kflow.bus.message import header_map, key_text

Start = Literal["beginning", "end"]


class ReaderError(BusError):
    """A topic could not be read (missing topic, Kafka unreachable, or not read in time)."""


def partition_for(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner picks for ``key`` (CRC-32 of the key).

    Every kflow producer is librdkafka-based, so all of one workflow's records are there.
    """
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: coordinates, key, bytes (``None`` = tombstone), headers."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    headers: Mapping[str, bytes]
    timestamp_ms: int


class TopicReader:
    """Reads ``partitions`` of ``topic`` (default: all) from ``start`` (or offsets per partition).

    ``key`` reads only the partition holding that key. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        partitions: Iterable[int] | None = None,
        key: str | None = None,
        start: Start | Mapping[int, int] = "beginning",
        overrides: Mapping[str, ConfigValue] | None = None,
    ) -> None:
        self.topic = topic
        self._consumer: Consumer = make_consumer(
            bootstrap,
            f"kflow.reader.{uuid.uuid4().hex}",
            overrides={"enable.partition.eof": True, "fetch.wait.max.ms": 10, **(overrides or {})},
        )
        try:
            self.partitions = self._existing_partitions(bootstrap, partitions, key)
            offsets: Mapping[int, int]
            if isinstance(start, str):
                first = OFFSET_BEGINNING if start == "beginning" else OFFSET_END
                offsets = dict.fromkeys(self.partitions, first)
            else:
                offsets = {p: start.get(p, OFFSET_BEGINNING) for p in self.partitions}
            self._consumer.assign([TopicPartition(topic, p, offsets[p]) for p in self.partitions])
        except BaseException:
            self._consumer.close()
            raise
        self._at_end: set[int] = set()
        self._next: dict[int, int] = {}
        """Per partition, the offset after the last record returned or of the last EOF."""

    def _existing_partitions(
        self, bootstrap: str, wanted: Iterable[int] | None, key: str | None
    ) -> list[int]:
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=10)
        except KafkaException as e:
            raise ReaderError(f"cannot reach Kafka at {bootstrap}: {e.args[0]}") from e
        info = metadata.topics.get(self.topic)
        if info is None or info.error is not None or not info.partitions:
            raise ReaderError(f"topic {self.topic} does not exist; run `kflow topics create`")
        present = sorted(info.partitions)
        self.partition_count = len(present)
        if key is not None:
            return [partition_for(key, len(present))]
        if wanted is None:
            return present
        chosen = sorted(set(wanted))
        missing = [p for p in chosen if p not in info.partitions]
        if missing:
            raise ReaderError(f"{self.topic} has no partition(s) {missing} (it has {len(present)})")
        return chosen

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def poll(self, timeout_s: float = 0.2, max_records: int = 1000) -> list[RawRecord]:
        """Records that arrived within ``timeout_s`` (returns as soon as there are some)."""
        # consume(n, t) waits for n messages or all of t; poll() returns at the first message
        # (or end-of-partition event), then take only what is already fetched
        first = self._consumer.poll(timeout_s)
        if first is None:
            return []
        rest = self._consumer.consume(max_records - 1, 0) if max_records > 1 else []
        out: list[RawRecord] = []
        for message in (first, *rest):
            error = message.error()
            partition = message.partition() or 0
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(partition)
                    self._next[partition] = message.offset() or 0
                    continue
                if is_fatal(error) or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise ReaderError(f"reading {self.topic}: {error.str()}")
                continue  # transient: librdkafka retries by itself
            self._at_end.discard(partition)
            offset = message.offset() or 0
            self._next[partition] = offset + 1
            value = message.value()
            out.append(
                RawRecord(
                    topic=self.topic,
                    partition=partition,
                    offset=offset,
                    key=key_text(message.key()),
                    value=value.encode() if isinstance(value, str) else value,
                    headers=header_map(message),
                    timestamp_ms=message.timestamp()[1],
                )
            )
        return out

    def read_to_end(self, timeout_s: float = 60.0) -> Iterator[RawRecord]:
        """Every record up to each partition's end as of now, then stop (may be called again).

        Raises :class:`ReaderError` if the end is not reached within ``timeout_s``: a partial
        read is never passed off as the whole partition.
        """
        self._rearm()
        deadline = time.monotonic() + timeout_s
        while len(self._at_end) < len(self.partitions):
            if time.monotonic() >= deadline:
                behind = sorted(set(self.partitions) - self._at_end)
                raise ReaderError(
                    f"{self.topic} partition(s) {behind} not read to the end in {timeout_s:g}s"
                )
            yield from self.poll(0.1)

    def _rearm(self) -> None:
        """Make every partition report its end again, the end as of now.

        librdkafka reports a partition's end once per arrival there, and a report may wait
        in the queue while records are written: a second :meth:`read_to_end` would wait
        for a report that never comes, or stop at an old end. Seeking to the next offset
        (nothing already returned is read again) drops queued reports and makes the fetcher
        find the current end. (A partition that returned nothing yet is left as assigned.)
        """
        for partition, offset in sorted(self._next.items()):
            self._consumer.seek(TopicPartition(self.topic, partition, offset))
        self._at_end.clear()

    def first_records(self, timeout_s: float = 10.0) -> set[int]:
        """Partitions that have a record between where this reader is and their end now.

        Each partition is read only until its first record or its end, so this is cheap
        however far behind the end the reader starts. Raises :class:`ReaderError` if some
        partition gives neither within ``timeout_s``.
        """
        self._rearm()
        found: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(found | self._at_end) < len(self.partitions):
            if time.monotonic() >= deadline:
                behind = sorted(set(self.partitions) - found - self._at_end)
                raise ReaderError(f"{self.topic} partition(s) {behind} not read in {timeout_s:g}s")
            found.update(record.partition for record in self.poll(0.1, max_records=100))
        return found

    def follow(self, timeout_s: float | None = None) -> Iterator[RawRecord]:
        """Records as they arrive, for ever (or until ``timeout_s``; then it just stops)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            yield from self.poll(0.2)

    def positions(self) -> dict[int, int]:
        """The next offset this reader will return, per partition (negative = not yet known)."""
        return {
            tp.partition: tp.offset
            for tp in self._consumer.position(
                [TopicPartition(self.topic, p) for p in self.partitions]
            )
        }

    def bounds(self) -> dict[int, tuple[int, int]]:
        """First and end offset per partition, asked of the broker now (end: the last
        stable offset for ``read_committed``)."""
        try:
            return {
                p: self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=10, cached=False
                )
                for p in self.partitions
            }
        except KafkaException as e:
            raise ReaderError(f"end offsets of {self.topic}: {e.args[0]}") from e

    def close(self) -> None:
        """Release the consumer."""
        self._consumer.close()


def read_latest(
    bootstrap: str, topic: str, partitions: Iterable[int], timeout_s: float = 60.0
) -> dict[int, dict[str, bytes | None]]:
    """Latest value per key (``None`` = tombstone) in each of ``partitions`` of ``topic``.

    Waits first until no transaction is open on those partitions, so the result is exactly
    what the last committed transaction left (restores depend on this; see ADR 0021).
    """
    latest = read_latest_records(bootstrap, topic, partitions, timeout_s)
    return {p: {k: r.value for k, r in records.items()} for p, records in latest.items()}


def read_latest_records(
    bootstrap: str, topic: str, partitions: Iterable[int], timeout_s: float = 60.0
) -> dict[int, dict[str, RawRecord]]:
    """:func:`read_latest` with each key's whole latest record (headers included)."""
    wanted = sorted(set(partitions))
    latest: dict[int, dict[str, RawRecord]] = {p: {} for p in wanted}
    if not wanted:
        return latest
    _wait_until_stable(bootstrap, topic, wanted, timeout_s)
    with TopicReader(bootstrap, topic, partitions=wanted) as reader:
        for record in reader.read_to_end(timeout_s):
            if record.key is not None:
                latest[record.partition][record.key] = record
    return latest


def read_key(bootstrap: str, topic: str, key: str, timeout_s: float = 60.0) -> Iterator[RawRecord]:
    """Every record of ``key`` now in ``topic``, in log order (only its partition is read).

    Like :func:`read_latest` it first waits until no transaction is open there: a
    ``read_committed`` reader stops before an open transaction, and would miss records
    committed after it (an audit must see them all).
    """
    with TopicReader(bootstrap, topic, key=key) as reader:
        _wait_until_stable(bootstrap, topic, reader.partitions, timeout_s)
        for record in reader.read_to_end(timeout_s):
            if record.key == key:
                yield record


def _wait_until_stable(bootstrap: str, topic: str, partitions: list[int], timeout_s: float) -> None:
    try:
        wait_until_stable(bootstrap, topic, partitions, timeout_s)
    except TopicAdminError as e:
        raise ReaderError(str(e)) from e


def record_ends(
    bootstrap: str, topic: str, timeout_s: float = 60.0, tail: int = 256
) -> dict[int, int]:
    """Per partition of ``topic``: 1 + the offset of the last record a reader is given now
    (0 for a partition without any).

    That is the ``offset + 1`` a consumer that stores its progress that way reaches once it
    has read everything; the partition's end offset can be larger (commit markers, aborted
    records after the last committed one) and is never reached that way. Only the tail is
    read: the last ``tail`` offsets, then 8 times more, until a record is found.
    """
    with TopicReader(bootstrap, topic) as probe:
        bounds = probe.bounds()
    found = dict.fromkeys(bounds, 0)
    pending = {p for p, (low, end) in bounds.items() if end > low}
    while pending:
        starts = {p: max(bounds[p][0], bounds[p][1] - tail) for p in pending}
        with TopicReader(bootstrap, topic, partitions=pending, start=starts) as reader:
            for record in reader.read_to_end(timeout_s):
                found[record.partition] = max(found[record.partition], record.offset + 1)
        pending = {p for p in pending if not found[p] and starts[p] > bounds[p][0]}
        tail *= 8
    return found
