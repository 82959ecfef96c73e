"""Unit tests of the pure topic naming and specs (no server)."""

from __future__ import annotations

import pytest

from kflow.bus.topics import BUILTIN_QUEUES, topic_names, topic_specs
from kflow.settings import Settings


def test_names_follow_the_prefix() -> None:
    names = topic_names("acme-prod")
    assert names.commands == "acme-prod.commands"
    assert names.events == "acme-prod.events"
    assert names.results == "acme-prod.results"
    assert names.snapshots == "acme-prod.snapshots"
    assert names.definitions == "acme-prod.definitions"
    assert names.dlq == "acme-prod.dlq"
    assert names.tasks("http") == "acme-prod.tasks.http"


def test_queue_of_inverts_tasks() -> None:
    names = topic_names("kflow")
    assert names.queue_of(names.tasks("gpu_2")) == "gpu_2"
    assert names.queue_of("kflow.events") is None
    assert names.queue_of("other.tasks.x") is None


@pytest.mark.parametrize("prefix", ["", "has space", "slash/y", "x" * 101])
def test_invalid_prefix_is_rejected_with_the_rule(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"topic prefix .* use 1-100 characters"):
        topic_names(prefix)


@pytest.mark.parametrize("queue", ["", "a.b", "with space"])
def test_invalid_queue_is_rejected(queue: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        topic_names("kflow").tasks(queue)


def test_specs_cover_every_topic_once_in_stable_order() -> None:
    specs = topic_specs("p", 3, ["b", "a", "b"])
    assert [s.name for s in specs] == [
        "p.commands",
        "p.results",
        "p.events",
        "p.snapshots",
        "p.closed",
        "p.definitions",
        "p.principals",
        "p.dlq",
        "p.dlq-actions",
        "p.tasks.b",
        "p.tasks.a",
    ]
    assert specs == topic_specs("p", 3, ["b", "a", "b"])


def test_co_partitioned_topics_share_the_partition_count() -> None:
    by_name = {s.name: s for s in topic_specs("p", 6)}
    for kind in ("commands", "results", "events", "snapshots", "closed"):
        assert by_name[f"p.{kind}"].partitions == 6
    assert by_name["p.definitions"].partitions == 1
    assert by_name["p.principals"].partitions == 1
    assert by_name["p.principals"].config["cleanup.policy"] == "compact"


def test_compaction_and_retention() -> None:
    by_name = {s.name: s for s in topic_specs("p", 2)}
    assert by_name["p.snapshots"].config["cleanup.policy"] == "compact"
    assert by_name["p.definitions"].config["cleanup.policy"] == "compact"
    assert by_name["p.closed"].config["cleanup.policy"] == "compact,delete"
    assert by_name["p.closed"].config["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert by_name["p.events"].config["retention.ms"] == "-1"
    assert "cleanup.policy" not in by_name["p.commands"].config


def test_every_topic_accepts_records_larger_than_the_payload_limit() -> None:
    limit = Settings().max_payload_bytes
    for spec in topic_specs("p", 1):
        assert int(spec.config["max.message.bytes"]) >= 2 * limit, spec.name


def test_default_queues_are_the_builtin_ones() -> None:
    names = {s.name for s in topic_specs("p", 1)}
    assert {f"p.tasks.{q}" for q in BUILTIN_QUEUES} <= names


def test_zero_partitions_rejected() -> None:
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        topic_specs("p", 0)
