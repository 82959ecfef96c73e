"""Rebuild the PostgreSQL read model from offset 0 into a fresh schema, then swap it in.

1. Migrate ``{schema}_rebuild`` and project every record of ``{p}.events`` and
   ``{p}.definitions`` into it, from offset 0 to the current end.
2. Take the live projection's advisory lock of every partition (running live
   projectors wait at the start of their next batch), read its offsets, finish projecting up to at
   least them, and in the same transaction move the rebuilt tables into the live
   schema. The live projector then reads the swapped offsets table, notices the
   offsets moved, drops its cache and carries on: nothing is lost or applied twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from psycopg import sql

from kflow.bus.clients import make_admin, make_consumer
from kflow.bus.contracts import default_contracts
from kflow.bus.reader import record_ends
from kflow.bus.topics import TopicNames
from kflow.projections.db import connect
from kflow.projections.decoding import Decoder
from kflow.projections.errors import ReadSideError
from kflow.projections.log_event import DefinitionRecord, LogEvent, Poison
from kflow.projections.migrate import migrate
from kflow.projections.postgres import (
    BatchResult,
    Partition,
    PostgresProjector,
    load_offsets,
    lock_partitions,
)
from kflow.projections.refusals import Record, apply_or_split

log = logging.getLogger(__name__)

PROJECTION_TABLES = ("executions", "steps", "events", "definitions", "projection_offsets")
"""Tables a rebuild replaces; ``api_keys`` and ``schema_migrations`` stay."""


@dataclass
class RebuildReport:
    """What a rebuild did."""

    events: int
    poison: int
    """Records skipped: undecodable, or refused definitions (``kflow.registry.checked``)."""
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int, int], None]
"""Called with (records done, records known to exist) after each batch."""


class _Reader:
    """Reads the topics from offset 0 into the fresh schema's projector."""

    def __init__(self, bootstrap: str, topics: TopicNames, sink: PostgresProjector) -> None:
        self.sink = sink
        self.topics = topics
        self.decode = Decoder(default_contracts(), topics)
        self.consumer: Consumer = make_consumer(
            bootstrap, f"{topics.prefix}.rebuild.{uuid.uuid4().hex[:8]}"
        )
        self.bootstrap = bootstrap
        self.partitions: list[TopicPartition] = []
        for name in (topics.events, topics.definitions):
            meta = self.consumer.list_topics(name, timeout=10).topics.get(name)
            if meta is None or meta.error is not None or not meta.partitions:
                raise ReadSideError(f"topic {name} does not exist; run `kflow topics create`")
            self.partitions += [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]
        self.events = 0
        self.poison = 0
        self.reached: dict[Partition, int] = {}
        """Next offset per partition: where we started, then past what we consumed."""

    def start(self, stored: dict[Partition, int]) -> None:
        """Begin at the offsets already stored in the fresh schema (0 where none)."""
        for tp in self.partitions:
            at = stored.get((tp.topic, tp.partition))
            tp.offset = OFFSET_BEGINNING if at is None else at
            self.reached[(tp.topic, tp.partition)] = at or 0
        self.consumer.assign(self.partitions)

    def ends(self) -> dict[Partition, int]:
        """Per partition, the offset after the last record there now.

        Not the end offset: on a log written with transactions that is one past the last
        commit marker, which a projector storing ``offset + 1`` of the last record it
        applied never reaches (the rebuild waited for its workers for ever).
        """
        out: dict[Partition, int] = {}
        for name in (self.topics.events, self.topics.definitions):
            for partition, end in record_ends(self.bootstrap, name).items():
                out[(name, partition)] = end
        return out

    def positions(self) -> dict[Partition, int]:
        """``reached``, moved on by the consumer's position (which also skips control records)."""
        asked = [TopicPartition(t.topic, t.partition) for t in self.partitions]
        for tp in self.consumer.position(asked):
            key = (tp.topic, tp.partition)
            if tp.offset >= 0:  # negative: nothing fetched yet for this partition
                self.reached[key] = max(self.reached.get(key, 0), tp.offset)
        return self.reached

    def read_until(
        self, targets: dict[Partition, int], progress: Progress | None, total: int
    ) -> None:
        """Apply batches until every partition's position reaches its target.

        Targets of partitions this reader does not read (offsets stored for another
        topic prefix) are ignored.
        """
        mine = {(tp.topic, tp.partition) for tp in self.partitions}
        targets = {tp: off for tp, off in targets.items() if tp in mine}
        while True:
            pos = self.positions()
            if all(pos.get(tp, -1) >= off for tp, off in targets.items() if off > 0):
                return
            msgs = self.consumer.consume(5_000, 0.5)
            records: list[Record] = []
            positions: dict[Partition, int] = {}
            for msg in msgs:
                if msg.error() is not None:
                    continue
                tp = (str(msg.topic()), int(msg.partition() or 0))
                positions[tp] = int(msg.offset() or 0) + 1
                decoded = self.decode(msg)
                if isinstance(decoded, Poison):
                    self.poison += 1
                else:
                    if isinstance(decoded, DefinitionRecord):
                        self.poison += decoded.refused is not None  # still removes its version
                    records.append(decoded)
            if positions:
                apply_or_split(self._apply, records, positions, self._refused)
                self.events += sum(isinstance(r, LogEvent) for r in records)
                if progress is not None:
                    progress(self.events + self.poison, total)

    def close(self) -> None:
        self.consumer.close()
        self.sink.close()

    def _apply(self, records: Sequence[Record], positions: Mapping[Partition, int]) -> BatchResult:
        events = [r for r in records if isinstance(r, LogEvent)]
        defs = [r for r in records if isinstance(r, DefinitionRecord)]
        return self.sink.apply(events, defs, positions)

    def _refused(self, record: Record, error: Exception) -> None:
        """Counted with the poison: the live projector has dead-lettered it already."""
        self.poison += 1
        log.warning(
            "rebuild skips %s[%s]@%s: %s", record.topic, record.partition, record.offset, error
        )


def rebuild(
    dsn: str,
    schema: str,
    bootstrap: str,
    topics: TopicNames,
    progress: Progress | None = None,
    processes: int = 1,
) -> RebuildReport:
    """Rebuild ``schema``'s projection tables from the log and swap them in atomically.

    With ``processes`` > 1 the bulk of the log is projected by that many projector
    processes sharing the partitions (one process decodes and folds ~10k events/s);
    this process then finishes the tail and swaps.
    """
    started = time.perf_counter()
    fresh = f"{schema}_rebuild"
    with connect(dsn, schema) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh)))
        migrate(conn, schema)
        migrate(conn, fresh)
        conn.commit()
    reader = _Reader(bootstrap, topics, PostgresProjector(dsn, fresh))
    try:
        ends = reader.ends()
        total = sum(ends.values())
        bulk = 0
        if processes > 1:
            bulk = _project_in_workers(dsn, fresh, bootstrap, topics, ends, processes, progress)
        reader.start(load_offsets(reader.sink.conn, "postgres"))
        reader.sink.conn.commit()
        reader.read_until(ends, progress, total)
        with connect(dsn, schema) as live, live.transaction():
            every = [(tp.topic, tp.partition) for tp in reader.partitions]
            lock_partitions(live, schema, "postgres", every)
            reader.read_until(load_offsets(live, "postgres"), progress, total)
            _swap(live, schema, fresh)
    finally:
        reader.close()
    events = reader.events + bulk
    return RebuildReport(events, reader.poison, time.perf_counter() - started)


def _project_in_workers(
    dsn: str,
    fresh: str,
    bootstrap: str,
    topics: TopicNames,
    ends: dict[Partition, int],
    processes: int,
    progress: Progress | None,
) -> int:
    """Run projector processes into ``fresh`` until its offsets reach ``ends``; events applied."""
    env = {
        **os.environ,
        "KFLOW_DATABASE_URL": dsn,
        "KFLOW_DB_SCHEMA": fresh,
        "KFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "KFLOW_TOPIC_PREFIX": topics.prefix,
        "KFLOW_PROJECTOR_GROUP": f"{topics.prefix}.rebuild.{uuid.uuid4().hex[:8]}",
    }
    env.pop("KFLOW_PROJECTOR_INSTANCE", None)  # dynamic members leave the group on exit
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "kflow.projections", "postgres", "--no-dead-letters"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    total = sum(ends.values())
    try:
        with connect(dsn, fresh, autocommit=True) as conn:
            while True:
                stored = load_offsets(conn, "postgres")
                done = sum(min(stored.get(tp, 0), end) for tp, end in ends.items())
                if progress is not None:
                    progress(done, total)
                if all(stored.get(tp, 0) >= end for tp, end in ends.items() if end > 0):
                    break
                if any(w.poll() is not None for w in workers):
                    raise ReadSideError("a rebuild worker process exited; see its log")
                time.sleep(0.2)
            row = conn.execute("SELECT count(*) FROM events").fetchone()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        _delete_group(bootstrap, env["KFLOW_PROJECTOR_GROUP"])
    return int(str(row[0])) if row else 0


def _delete_group(bootstrap: str, group: str) -> None:
    """Best effort: the workers' group is of no use after the rebuild."""
    admin = make_admin(bootstrap)
    for fut in admin.delete_consumer_groups([group], request_timeout=10).values():
        with contextlib.suppress(KafkaException):
            fut.result()


def _swap(conn: object, live: str, fresh: str) -> None:
    import psycopg

    assert isinstance(conn, psycopg.Connection)
    for table in PROJECTION_TABLES:
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                sql.Identifier(live), sql.Identifier(table)
            )
        )
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                sql.Identifier(fresh), sql.Identifier(table), sql.Identifier(live)
            )
        )
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(fresh)))
