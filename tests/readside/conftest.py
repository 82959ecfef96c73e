"""Fixtures of the read-side tests: settings bound to this test's topics, schema and keys."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from kflow.projections.db import connect
from kflow.projections.migrate import migrate
from kflow.projections.postgres import BatchResult
from kflow.projections.runner import Projector
from kflow.projections.service import run_projector
from kflow.settings import Settings
from tests.kafka_helpers import produce
from tests.readside.workload import WorkflowLog, interleave


@dataclass
class ReadSide:
    """Everything a read-side test needs to know about its isolated environment."""

    settings: Settings

    @property
    def dsn(self) -> str:
        return self.settings.database_url

    @property
    def schema(self) -> str:
        return self.settings.db_schema

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return connect(self.dsn, self.schema, autocommit=True)

    def produce(self, logs: list[WorkflowLog]) -> int:
        topic = f"{self.settings.topic_prefix}.events"
        return produce(self.settings.kafka_bootstrap, topic, interleave(logs))


@pytest.fixture
def readside(isolated_settings: Settings, pg_dsn: str, redis_prefix: str) -> ReadSide:
    """Settings for this test: its topic prefix, a fresh migrated schema, its Redis prefix."""
    schema = f"rs_{uuid.uuid4().hex[:10]}"
    settings = isolated_settings.model_copy(
        update={
            "database_url": pg_dsn,
            "db_schema": schema,
            "redis_prefix": redis_prefix,
            "projector_batch": 500,
        }
    )
    with connect(pg_dsn, schema) as conn:
        migrate(conn, schema)
        conn.commit()
    return ReadSide(settings)


class RunningProjector:
    """A projector on a thread; ``wait_applied(n)`` blocks until n records were applied."""

    def __init__(self, readside: ReadSide, target: str) -> None:
        self.stop = threading.Event()
        self.applied = 0
        self.errors: list[BaseException] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(readside, target), daemon=True)
        self._thread.start()

    def _on_batch(self, result: BatchResult) -> None:
        with self._cond:
            self.applied += result.applied + result.duplicates
            self._cond.notify_all()

    def _run(self, readside: ReadSide, target: str) -> None:
        try:
            run_projector(
                target,
                settings=readside.settings,
                stop=self.stop,
                on_batch=self._on_batch,
            )
        except BaseException as e:  # surfaced by wait_applied
            self.errors.append(e)
            with self._cond:
                self._cond.notify_all()

    def wait_applied(self, n: int, limit_s: float = 90.0) -> None:
        deadline = time.monotonic() + limit_s
        with self._cond:
            while self.applied < n and not self.errors:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"projector applied {self.applied} of {n} records")
                self._cond.wait(left)
        if self.errors:
            raise AssertionError(f"projector failed: {self.errors[0]!r}") from self.errors[0]

    def close(self) -> None:
        self.stop.set()
        self._thread.join(30)


@pytest.fixture
def start_projector(readside: ReadSide) -> Iterator[Callable[[str], RunningProjector]]:
    """Start projectors on threads; all are stopped after the test."""
    running: list[RunningProjector] = []

    def start(target: str) -> RunningProjector:
        p = RunningProjector(readside, target)
        running.append(p)
        return p

    yield start
    for p in running:
        p.close()


def wait_until(check: Callable[[], bool], what: str, limit_s: float = 90.0) -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``limit_s`` (never hangs)."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


__all__ = ["Projector", "ReadSide", "RunningProjector", "wait_until"]


def free_port() -> int:
    """A free local port: the first free one of ``KFLOW_TEST_PORTS`` (``LOW-HIGH``) when set,
    so tests on a shared machine keep to their range; any free port otherwise."""
    import os
    import socket

    low, _, high = os.environ.get("KFLOW_TEST_PORTS", "").partition("-")
    candidates = range(int(low), int(high) + 1) if low and high else [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port in KFLOW_TEST_PORTS={low}-{high}")


class ApiServer:
    """The real API under uvicorn on a thread, bound to the test's environment."""

    def __init__(self, readside: ReadSide) -> None:
        import uvicorn

        from kflow.api.app import create_app
        from kflow.api.resources import ApiConfig
        from kflow.api.server import uvicorn_config

        self.config = ApiConfig(
            database_url=readside.dsn,
            db_schema=readside.schema,
            redis_url=readside.settings.redis_url,
            redis_prefix=readside.settings.redis_prefix,
            kafka_bootstrap=readside.settings.kafka_bootstrap,
            topic_prefix=readside.settings.topic_prefix,
            max_payload_bytes=10_000,
            sse_keepalive_s=1.0,
            auth_cache_s=0,  # revocation tests expect the very next request to fail
        )
        self.app = create_app(self.config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn_config(self.app, "127.0.0.1", self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        wait_until(lambda: self.server.started, "the API to start", 30)

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)


@pytest.fixture
def api(readside: ReadSide) -> Iterator[ApiServer]:
    """The read-model API serving this test's schema, Redis prefix and topics."""
    server = ApiServer(readside)
    yield server
    server.close()


@pytest.fixture
def make_key(readside: ReadSide) -> Callable[..., str]:
    """Create an API key in the test's schema; returns the bearer token."""
    from kflow.api.apikeys import Scope, create_key

    def make(tenant: str = "default", *scopes: str) -> str:
        with readside.connect() as conn:
            key = create_key(conn, "test", tenant, [Scope(s) for s in scopes or ("read",)])
        return key.token

    return make
