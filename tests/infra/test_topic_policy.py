"""Topic policy (replicas, min.insync.replicas), topic checks and the start-up probe."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from kflow.bus.admin import create_topics, delete_topics, list_topics, topic_config
from kflow.bus.commands import CommandNotDelivered, CommandPublisher
from kflow.bus.envelope import envelope_meta
from kflow.bus.layout import TopicLayoutError
from kflow.bus.topics import (
    TopicSpec,
    TopicState,
    resolve_policy,
    topic_names,
    topic_problems,
    topic_specs,
)
from kflow.cli import topics
from kflow.cli.run import service_command
from kflow.core.inputs import CancelWorkflow
from kflow.orchestrator.service import OrchestratorConfig, OrchestratorService
from kflow.settings import Settings
from tests.runtime.services import REPO


@pytest.mark.parametrize(
    ("brokers", "rf", "isr", "expected"),
    [(1, None, None, (1, 1)), (2, None, None, (2, 1)), (3, None, None, (3, 2)),
     (6, None, None, (3, 2)), (6, 5, 3, (5, 3)), (3, None, 1, (3, 1))],
)  # fmt: skip
def test_policy_defaults_follow_the_broker_count(
    brokers: int, rf: int | None, isr: int | None, expected: tuple[int, int]
) -> None:
    policy = resolve_policy(brokers, rf, isr)
    assert (policy.replication_factor, policy.min_insync_replicas) == expected


def test_impossible_overrides_name_the_variable() -> None:
    with pytest.raises(ValueError, match="KFLOW_REPLICATION_FACTOR=3 but the cluster has 1"):
        resolve_policy(1, 3)
    with pytest.raises(ValueError, match="KFLOW_MIN_INSYNC_REPLICAS=3"):
        resolve_policy(3, 2, 3)


def test_problems_name_the_topic_and_the_fix() -> None:
    specs = topic_specs("p", 4, ())
    existing = {
        "p.events": TopicState("p.events", 1, 1, {"cleanup.policy": "delete"}),
        "p.snapshots": TopicState("p.snapshots", 4, 3, {"cleanup.policy": "delete"}),
        "p.commands": TopicState("p.commands", 4, 3, {"cleanup.policy": "delete"}),
    }
    problems = topic_problems(specs, existing, resolve_policy(3))
    assert len(problems) == 3
    events, replicas, cleanup = (str(p) for p in problems)
    assert [p.kind for p in problems] == ["partitions", "replication", "cleanup"]
    assert events.startswith("p.events has 1 partition(s), kflow expects 4")
    assert "KFLOW_PARTITIONS=1" in events and "`kflow topics create`" in events
    assert replicas.startswith("p.events has replication factor 1, the topic policy is 3")
    assert cleanup.startswith("p.snapshots has cleanup.policy=delete, kflow expects compact")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    topics.register(app)
    return app


@pytest.fixture
def fresh_prefix(stack: Settings) -> Iterator[str]:
    """A prefix with no topics; whatever gets created under it is deleted afterwards."""
    prefix = f"test-policy-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_topics(
        stack.kafka_bootstrap, [t.name for t in list_topics(stack.kafka_bootstrap, prefix)]
    )


def test_topics_create_prints_the_plan_and_sets_min_insync(
    app: typer.Typer, stack: Settings, fresh_prefix: str
) -> None:
    result = CliRunner().invoke(app, ["topics", "create", "--prefix", fresh_prefix])
    assert result.exit_code == 0, result.output
    # the shared local broker is one node: the policy asked of it is 1 replica, 1 in sync
    assert "replication factor 1, min.insync.replicas 1" in result.output
    assert f"will create {fresh_prefix}.snapshots (2" not in result.output  # KFLOW_PARTITIONS
    assert f"will create {fresh_prefix}.snapshots" in result.output
    assert "cleanup.policy=compact" in result.output
    config = topic_config(stack.kafka_bootstrap, f"{fresh_prefix}.events")
    assert config["min.insync.replicas"] == "1"


def test_topics_create_names_a_topic_with_the_wrong_partition_count(
    app: typer.Typer, stack: Settings, fresh_prefix: str
) -> None:
    events = f"{fresh_prefix}.events"
    create_topics(stack.kafka_bootstrap, [TopicSpec(events, 1)])  # as auto-creation made it

    result = CliRunner().invoke(
        app, ["topics", "create", "--prefix", fresh_prefix, "--partitions", "4"]
    )

    assert result.exit_code == 1, result.output
    assert f"{events} has 1 partition(s), kflow expects 4" in result.output
    assert "nothing was created" in result.output
    assert [t.name for t in list_topics(stack.kafka_bootstrap, fresh_prefix)] == [events]


def test_topics_create_sets_a_wrong_cleanup_policy_right(
    app: typer.Typer, stack: Settings, fresh_prefix: str
) -> None:
    snapshots = f"{fresh_prefix}.snapshots"
    create_topics(stack.kafka_bootstrap, [TopicSpec(snapshots, stack.partitions)])

    result = CliRunner().invoke(app, ["topics", "create", "--prefix", fresh_prefix])

    assert result.exit_code == 0, result.output
    assert f"fixed    {snapshots} has cleanup.policy=delete" in result.output, result.output
    assert topic_config(stack.kafka_bootstrap, snapshots)["cleanup.policy"] == "compact"


def test_orchestrator_refuses_mismatched_co_partitioned_topics(
    stack: Settings, fresh_prefix: str
) -> None:
    specs = topic_specs(fresh_prefix, 2, ("default",))
    events = topic_names(fresh_prefix).events
    create_topics(
        stack.kafka_bootstrap,
        [TopicSpec(s.name, 3, s.config) if s.name == events else s for s in specs],
    )
    with pytest.raises(TopicLayoutError, match=f"{events} has 3 partition"):
        OrchestratorService(
            OrchestratorConfig(
                bootstrap=stack.kafka_bootstrap,
                topic_prefix=fresh_prefix,
                instance_id="o-0",
                partitions=2,
            )
        )


def test_services_refuse_to_start_on_missing_topics_with_one_clear_line(
    stack: Settings, fresh_prefix: str
) -> None:
    env = {"KFLOW_TOPIC_PREFIX": fresh_prefix, "KFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap}
    for args in (["run", "processor", "--queue", "default"], ["run", "orchestrator"]):
        result = subprocess.run(
            service_command(*args),
            env={**os.environ, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert f"{fresh_prefix}.results does not exist" in result.stderr
        assert "`kflow topics create`" in result.stderr
    assert list_topics(stack.kafka_bootstrap, fresh_prefix) == []


def test_a_command_to_a_missing_topic_names_it_and_creates_nothing(
    stack: Settings, fresh_prefix: str
) -> None:
    publisher = CommandPublisher(stack.kafka_bootstrap, fresh_prefix, timeout_s=5)
    command = CancelWorkflow(workflow_id="wf-1", reason="test")
    try:
        with pytest.raises(CommandNotDelivered) as caught:
            publisher.publish(command, envelope_meta(command))
    finally:
        publisher.close()
    message = str(caught.value)
    assert f"topic {fresh_prefix}.commands does not exist" in message
    assert "`kflow topics create`" in message
    assert list_topics(stack.kafka_bootstrap, fresh_prefix) == []  # no implicit creation
