"""Run a projector process: ``run_projector("postgres" | "redis")`` until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from enum import StrEnum

import redis

from kflow.bus.layout import check_layout
from kflow.bus.topics import topic_names
from kflow.projections.db import connect
from kflow.projections.migrate import migrate
from kflow.projections.postgres import BatchResult, PostgresProjector
from kflow.projections.redis_projection import RedisProjector
from kflow.projections.runner import Projector, Sink
from kflow.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Target(StrEnum):
    """Where a projector writes."""

    POSTGRES = "postgres"
    REDIS = "redis"


def group_id(topic_prefix: str, target: Target) -> str:
    """A projector's consumer group (starts with the topic prefix, so ``kflow lag`` shows it)."""
    return f"{topic_prefix}.projector.{target.value}"


def make_sink(target: Target, settings: Settings) -> Sink:
    """The sink for ``target``; PostgreSQL gets its migrations applied first."""
    if target is Target.POSTGRES:
        with connect(settings.database_url, settings.db_schema) as conn:
            migrate(conn, settings.db_schema)
            conn.commit()
        return PostgresProjector(settings.database_url, settings.db_schema)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3)
    return RedisProjector(client, settings.redis_prefix, settings.finished_ttl_s)


def run_projector_processes(target: str, processes: int) -> int:
    """Run ``processes`` projector processes in one group until SIGTERM/SIGINT; their exit code.

    One Python process decodes and folds about 10,000 events/s; the consumer group
    spreads the partitions over the processes (see docs/adr/0041).
    """
    base = get_settings().projector_instance or f"{socket.gethostname()}-{target}"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "kflow.projections", target],
            env={**os.environ, "KFLOW_PROJECTOR_INSTANCE": f"{base}-{i}"},
        )
        for i in range(processes)
    ]

    def stop(*_: object) -> None:
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return max(child.wait() for child in children)


def run_projector(
    target: Target | str,
    *,
    settings: Settings | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    dead_letters: bool = True,
) -> Projector:
    """Project ``{p}.events`` into ``target`` until stopped (SIGTERM/SIGINT in the main thread).

    ``dead_letters=False`` logs poison records instead of dead-lettering them (rebuilds).
    """
    settings = settings or get_settings()
    kind = Target(target)
    names = topic_names(settings.topic_prefix)
    check_layout(settings.kafka_bootstrap, settings.topic_prefix, [names.events])
    sink = make_sink(kind, settings)
    projector = Projector(
        sink,
        settings.kafka_bootstrap,
        topic_names(settings.topic_prefix),
        settings.projector_group or group_id(settings.topic_prefix, kind),
        batch_size=settings.projector_batch,
        instance_id=settings.projector_instance,
        dead_letters=dead_letters,
    )
    if stop is not None:
        projector.stop = stop
    elif threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: projector.stop.set())
    log.info("projecting %s into %s", settings.topic_prefix, kind.value)
    projector.run(on_batch)
    return projector
