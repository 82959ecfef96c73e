"""What the Operations and Dead letters pages read from Kafka (blocking; run in a thread).

Consumer lag comes from ``kflow.observability.lag`` (the numbers ``kflow lag`` prints),
group members from the admin API's ``describe_consumer_groups``, and records through
``kflow.bus.reader`` (the one topic reader).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException

from kflow.bus.admin import admin_client
from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import decode_dead_letter
from kflow.bus.errors import DecodeError
from kflow.bus.reader import ReaderError, TopicReader
from kflow.bus.records import ExecuteStep
from kflow.core.events import Event, event_to_dict
from kflow.core.inputs import input_to_dict
from kflow.observability.lag import LagRow, LagUnavailable, consumer_lag

KAFKA_TIMEOUT_S = 3.0
DLQ_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Member:
    """One consumer seen in a kflow group: an orchestrator, processor or projector instance."""

    group: str
    client_id: str
    instance_id: str | None
    host: str
    partitions: tuple[str, ...]


def group_members(bootstrap: str, prefix: str) -> list[Member]:
    """Members of every group whose id starts with ``prefix.``."""
    admin = admin_client(bootstrap, KAFKA_TIMEOUT_S, quiet=True)
    try:
        listed = admin.list_consumer_groups(request_timeout=KAFKA_TIMEOUT_S).result()
        groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(f"{prefix}."))
        if not groups:
            return []
        described = admin.describe_consumer_groups(groups, request_timeout=KAFKA_TIMEOUT_S)
        out: list[Member] = []
        for group in groups:
            for m in described[group].result().members:
                tps = m.assignment.topic_partitions if m.assignment else []
                parts = tuple(
                    sorted(f"{tp.topic.removeprefix(prefix + '.')}[{tp.partition}]" for tp in tps)
                )
                out.append(Member(group, m.client_id, m.group_instance_id, m.host, parts))
        return out
    except KafkaException as e:
        raise LagUnavailable(f"Kafka at {bootstrap} did not describe the groups: {e}") from e


def oldest_unread(
    bootstrap: str, positions: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Timestamp (ms) of the record at each ``(topic, partition) -> offset`` (when it exists)."""
    found: dict[tuple[str, int], int] = {}
    by_topic: dict[str, dict[int, int]] = {}
    for (topic, partition), offset in positions.items():
        by_topic.setdefault(topic, {})[partition] = offset
    for topic, starts in by_topic.items():
        try:
            with TopicReader(bootstrap, topic, partitions=starts, start=starts) as reader:
                deadline = time.monotonic() + KAFKA_TIMEOUT_S
                while len([k for k in found if k[0] == topic]) < len(starts):
                    if time.monotonic() > deadline:
                        break
                    for record in reader.poll(0.2):
                        found.setdefault((topic, record.partition), record.timestamp_ms)
        except ReaderError:
            continue
    return found


@dataclass
class LagHistory:
    """Total lag per group over the last minutes, sampled at most every ``every_s``."""

    every_s: float = 10.0
    keep: int = 90
    samples: deque[tuple[float, dict[str, int]]] | None = None
    rows: list[LagRow] | None = None
    error: str | None = None
    taken_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, bootstrap: str, prefix: str) -> None:
        """Query Kafka unless the last sample is fresh enough (one query at a time)."""
        with self._lock:
            self._sample(bootstrap, prefix)

    def _sample(self, bootstrap: str, prefix: str) -> None:
        if self.samples is None:
            self.samples = deque(maxlen=self.keep)
        if time.time() - self.taken_at < self.every_s and self.rows is not None:
            return
        self.taken_at = time.time()
        try:
            rows = consumer_lag(bootstrap, f"{prefix}.", KAFKA_TIMEOUT_S)
        except LagUnavailable as e:
            self.error = str(e)
            return
        self.rows, self.error = rows, None
        totals: dict[str, int] = {}
        for r in rows:
            totals[r.group] = totals.get(r.group, 0) + r.lag
        self.samples.append((self.taken_at, totals))

    def series(self) -> dict[str, list[tuple[float, int]]]:
        """Per group: (time, total lag) points, oldest first."""
        out: dict[str, list[tuple[float, int]]] = {}
        for at, totals in self.samples or ():
            for group, lag in totals.items():
                out.setdefault(group, []).append((at, lag))
        return out


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter as the page shows it; ``decoded`` is None when the bytes are not a record."""

    dlq_partition: int
    dlq_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None
    reason: str
    error_type: str
    message: str
    at: int
    size: int
    decoded: dict[str, Any] | None
    tenant: str | None
    """The tenant named in the decoded envelope (None when undecodable)."""


def _body_dict(body: Event | ExecuteStep | Any) -> dict[str, Any]:
    if isinstance(body, Event):
        return event_to_dict(body)
    if isinstance(body, ExecuteStep):
        return {"type": "ExecuteStep", **dataclasses.asdict(body)}
    return input_to_dict(body)


def _decoded(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    if not raw:
        return None, None
    try:
        env = default_contracts().decode_envelope(raw)
    except DecodeError:
        return None, None
    view = {
        "type": env.type, "workflow_id": env.workflow_id, "event_id": env.event_id,
        "seq": env.seq, "actor": env.actor, "tenant": env.tenant, "body": _body_dict(env.body),
    }  # fmt: skip
    return view, env.tenant or "default"


def dead_letters(bootstrap: str, dlq_topic: str, shown: int = DLQ_SHOWN) -> list[Letter]:
    """The newest ``shown`` records of the DLQ topic, newest first."""
    codec = default_contracts().codec
    kept: deque[Letter] = deque(maxlen=shown)
    with TopicReader(bootstrap, dlq_topic) as reader:
        for record in reader.read_to_end(timeout_s=15.0):
            if record.value is None:
                continue
            try:
                letter = decode_dead_letter(record.value, codec)
            except DecodeError as e:
                kept.append(Letter(record.partition, record.offset, "?", -1, -1, record.key,
                                   "unreadable_dead_letter", type(e).__name__, str(e),
                                   record.timestamp_ms, len(record.value), None, None))  # fmt: skip
                continue
            decoded, tenant = _decoded(letter.original_value)
            kept.append(
                Letter(
                    record.partition,
                    record.offset,
                    letter.topic,
                    letter.partition,
                    letter.offset,
                    letter.original_key,
                    letter.reason,
                    letter.error_type,
                    letter.message,
                    letter.at,
                    len(letter.original_value or b""),
                    decoded,
                    tenant,
                )
            )
    return sorted(kept, key=lambda x: (x.at, x.dlq_offset), reverse=True)


def visible_letters(letters: Iterable[Letter], tenant: str, foreign_keys: set[str]) -> list[Letter]:
    """Letters a tenant may see: its own decoded records, and undecodable ones whose key is
    not a workflow of another tenant (``foreign_keys``)."""
    out = []
    for x in letters:
        if x.tenant is not None:
            if x.tenant == tenant:
                out.append(x)
        elif x.key is None or x.key not in foreign_keys:
            out.append(x)
    return out
