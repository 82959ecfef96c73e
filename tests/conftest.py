"""Shared pytest fixtures: the real local stack and per-test isolation on it.

Integration tests never mock Kafka, PostgreSQL or Redis. The session fixture
``stack`` brings the servers up when they are not answering (and never takes
them down: other sessions share them). Isolation per test:

* ``topic_prefix``: a unique prefix with every kflow topic created under it
  (``@pytest.mark.topics(partitions=N, queues=(...))`` to change the defaults);
* ``pg_dsn``: a fresh PostgreSQL database per test module, dropped afterwards;
* ``redis_prefix``: a unique key prefix whose keys are deleted afterwards.

Commands must be signed (the production default, ADR 0061), so the session has an API key
(``KFLOW_API_KEY``, also seen by the CLI and services the tests start as subprocesses) and
``topic_prefix`` publishes its signing key to the prefix's principals topic. Tests of the
"signatures off" migration mode turn them off explicitly.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from confluent_kafka import Producer
from psycopg import sql
from pydantic import SecretStr

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.clients import make_producer
from kflow.bus.principals import PrincipalKey, publish_key
from kflow.bus.signing import new_api_key
from kflow.bus.topics import BUILTIN_QUEUES, TopicNames, topic_names, topic_specs
from kflow.settings import Settings
from kflow.stack import STACK_SCRIPT, stack_env, stack_health
from tests.readside.dedicated import DedicatedKafka, port_answers

DEFAULT_TEST_PARTITIONS = 2
SESSION_KEY = new_api_key()
"""The test session's API key (tenant ``default``, admin): what a developer's
``~/.config/kflow/api-key`` is on their machine. Never stored in PostgreSQL: only its signing
key is published, per topic prefix (HTTP tests make their own keys)."""


def session_principal() -> PrincipalKey:
    """The signing record of :data:`SESSION_KEY`."""
    return PrincipalKey.of_token(SESSION_KEY, "test-session", "default", {"admin"})


_KEY_PRODUCERS: dict[str, Producer] = {}
"""One producer per broker for the session key: a fresh one per test cost ~0.5 s (setup),
a warm one a few ms."""


def publish_session_key(bootstrap: str, prefix: str) -> None:
    """Make :data:`SESSION_KEY` known to the orchestrators of ``prefix`` (the record `kflow
    apikey create` writes); fixtures that create a prefix's topics call it."""
    producer = _KEY_PRODUCERS.get(bootstrap)
    if producer is None:
        producer = _KEY_PRODUCERS[bootstrap] = make_producer(bootstrap, overrides={"linger.ms": 0})
    publish_key(bootstrap, prefix, session_principal(), producer=producer)


def pytest_configure(config: pytest.Config) -> None:
    # Every kflow process the tests start, in-process or as a subprocess, signs with it.
    os.environ["KFLOW_API_KEY"] = SESSION_KEY
    config.addinivalue_line(
        "markers",
        "topics(partitions=2, queues=BUILTIN_QUEUES): topics made by the topic_prefix fixture",
    )


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "t"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings read from the ``KFLOW_*`` environment (no server needed), with the session's
    API key."""
    return Settings().model_copy(update={"api_key": SecretStr(SESSION_KEY)})


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The running Kafka, PostgreSQL and Redis; started with ``stack.sh up`` if any is down."""
    unhealthy = [h.name for h in stack_health(settings) if not h.healthy]
    if unhealthy:
        result = subprocess.run(
            ["bash", str(STACK_SCRIPT), "up"],
            env=stack_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        still = [h for h in stack_health(settings) if not h.healthy]
        if result.returncode != 0 or still:
            pytest.fail(
                f"local stack not healthy ({', '.join(unhealthy)} down); "
                f"`{STACK_SCRIPT} up` exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}\n"
                + "\n".join(f"{h.name}: {h.detail}" for h in still),
                pytrace=False,
            )
    return settings


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Settings) -> str:
    """Bootstrap servers of the running broker."""
    return stack.kafka_bootstrap


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[str]:
    """A prefix unique to this test, with every kflow topic already created under it and the
    session's signing key on its principals topic.

    Topics are deleted after the test unless ``KFLOW_KEEP_TEST_TOPICS=1``.
    """
    marker = request.node.get_closest_marker("topics")
    options = marker.kwargs if marker else {}
    partitions = int(options.get("partitions", DEFAULT_TEST_PARTITIONS))
    queues = tuple(options.get("queues", BUILTIN_QUEUES))
    prefix = f"test-{_slug(request.node.name, 40)}-{uuid.uuid4().hex[:8]}"
    specs = topic_specs(prefix, partitions, queues)
    create_topics(kafka_bootstrap, specs)
    publish_session_key(kafka_bootstrap, prefix)
    yield prefix
    if os.environ.get("KFLOW_KEEP_TEST_TOPICS") != "1":
        delete_topics(kafka_bootstrap, [s.name for s in specs])


@pytest.fixture
def isolated_settings(stack: Settings, topic_prefix: str) -> Settings:
    """``settings`` pointing at this test's topics (``topic_prefix``)."""
    return stack.model_copy(update={"topic_prefix": topic_prefix})


@pytest.fixture
def topics(topic_prefix: str) -> TopicNames:
    """The :class:`TopicNames` of this test's ``topic_prefix``."""
    return topic_names(topic_prefix)


@pytest.fixture(scope="module")
def pg_dsn(request: pytest.FixtureRequest, stack: Settings) -> Iterator[str]:
    """DSN of a fresh PostgreSQL database (owner ``kflow``) for this test module; dropped after."""
    name = f"test_{_slug(request.module.__name__.rsplit('.', 1)[-1], 30).replace('-', '_')}"
    name = f"{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(stack.database_url, dbname=name)
    yield dsn
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def redis_url(stack: Settings) -> str:
    """URL of the running Redis."""
    return stack.redis_url


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test (``test:<name>:<hex>:``); its keys are deleted after."""
    prefix = f"test:{_slug(request.node.name, 40)}:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def _private_kafka_server(stack: Settings) -> Iterator[DedicatedKafka]:
    broker = DedicatedKafka()
    yield broker
    broker.destroy()


@pytest.fixture
def private_kafka(_private_kafka_server: DedicatedKafka) -> DedicatedKafka:
    """A single-node broker of the suite's own (never the shared one) that a test may stop,
    SIGKILL and start again; running when handed over. One JVM for every such test: each
    start costs seconds, and tests keep apart by their own topic names as on the shared one."""
    if not port_answers(_private_kafka_server.port):
        _private_kafka_server.start()  # after a test that left it stopped or killed
    return _private_kafka_server
