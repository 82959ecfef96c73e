"""`kflow start` and `kflow.Client` never create a topic, even where the broker would (defect 12).

Brokers default to ``auto.create.topics.enable=true``, and librdkafka producers ask for
auto-creation unless told not to: a typo in ``KFLOW_TOPIC_PREFIX`` would then make empty
topics with broker defaults and "start" a workflow nobody runs. These tests run a broker
of their own that auto-creates, and check the command fails with the fix named and the
broker holds no new topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from kflow import Client
from kflow.bus.admin import admin_client, create_topics
from kflow.bus.errors import BusError
from kflow.bus.topics import TopicSpec, topic_names
from kflow.cli.main import _register, app
from kflow.settings import Settings, get_settings
from tests.readside.dedicated import DedicatedKafka

pytestmark = pytest.mark.integration

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def auto_creating_broker(stack: Settings) -> Iterator[DedicatedKafka]:
    broker = DedicatedKafka(extra_env={"KFLOW_KAFKA_AUTO_CREATE_TOPICS": "true"})
    yield broker
    broker.destroy()


@pytest.fixture
def target(auto_creating_broker: DedicatedKafka, stack: Settings) -> Settings:
    return stack.model_copy(
        update={
            "kafka_bootstrap": auto_creating_broker.bootstrap,
            "topic_prefix": f"implicit{uuid.uuid4().hex[:8]}",
        }
    )


@pytest.fixture
def cli_env(target: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("KFLOW_KAFKA_BOOTSTRAP", target.kafka_bootstrap)
    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", target.topic_prefix)
    get_settings.cache_clear()
    yield target
    get_settings.cache_clear()


def topics_of(settings: Settings) -> set[str]:
    """The broker's topics under the prefix, after every topic created so far is visible.

    Topic creations are ordered in the KRaft metadata log: once a barrier topic created now
    is served, any topic a client caused to be auto-created earlier is listed too.
    """
    barrier = f"barrier{uuid.uuid4().hex[:8]}"
    create_topics(settings.kafka_bootstrap, [TopicSpec(barrier, 1, {})])
    names = admin_client(settings.kafka_bootstrap).list_topics(timeout=10).topics
    return {n for n in names if n.startswith(settings.topic_prefix + ".")}


def create_events_topic(settings: Settings) -> str:
    events = topic_names(settings.topic_prefix).events
    create_topics(settings.kafka_bootstrap, [TopicSpec(events, 1, {})])
    return events


def test_the_broker_does_create_topics_for_a_client_that_asks(target: Settings) -> None:
    """The control: without kflow's client config, a plain producer makes the topic."""
    topic = f"{target.topic_prefix}.control"
    producer = Producer({"bootstrap.servers": target.kafka_bootstrap})
    producer.produce(topic, b"x")
    assert producer.flush(30) == 0
    assert topic in topics_of(target)


def test_kflow_start_on_a_prefix_without_topics_fails_and_creates_none(cli_env: Settings) -> None:
    result = runner.invoke(app, ["start", "docpipe", "--id", "implicit-1"])
    assert result.exit_code == 1, result.output
    assert "started" not in result.stdout
    assert "kflow topics create" in result.output
    assert topics_of(cli_env) == set()


def test_kflow_start_without_a_commands_topic_fails_and_creates_it_not(cli_env: Settings) -> None:
    events = create_events_topic(cli_env)
    result = runner.invoke(app, ["start", "docpipe", "--id", "implicit-2"])
    assert result.exit_code == 1, result.output
    assert "started" not in result.stdout
    commands = topic_names(cli_env.topic_prefix).commands
    assert f"topic {commands} does not exist" in result.output
    assert "kflow topics create" in result.output
    assert topics_of(cli_env) == {events}


def test_client_start_on_a_prefix_without_topics_fails_and_creates_none(
    target: Settings,
) -> None:
    with Client(target) as client, pytest.raises(BusError, match="kflow topics create"):
        client.start("docpipe", {"doc_id": "d-1"})
    assert topics_of(target) == set()


def test_client_start_without_a_commands_topic_fails_and_creates_it_not(
    target: Settings,
) -> None:
    events = create_events_topic(target)
    commands = topic_names(target.topic_prefix).commands
    with (
        Client(target) as client,
        pytest.raises(BusError, match=f"topic {commands} does not exist.*kflow topics create"),
    ):
        client.start("docpipe", {"doc_id": "d-1"})
    assert topics_of(target) == {events}
