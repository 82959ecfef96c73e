"""Names and settings of every kflow topic (pure: no Kafka import, no I/O).

Every topic name is ``{prefix}.{kind}``; task topics are ``{prefix}.tasks.{queue}``.
Other packages get names from :func:`topic_names` instead of formatting strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

# Every topic's max.message.bytes; defined with the other limits (ADR 0027).
from kflow.core.limits import MAX_RECORD_BYTES as MAX_RECORD_BYTES

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

BUILTIN_QUEUES: tuple[str, ...] = ("default", "sleep", "http", "approval")
"""Queues of the built-in node types; ``kflow topics create`` makes these unless told otherwise."""

_BASE: Mapping[str, str] = MappingProxyType({"max.message.bytes": str(MAX_RECORD_BYTES)})
RECORD_LIMIT_CONFIG = _BASE
"""The setting every kflow topic has: ``max.message.bytes`` = :data:`MAX_RECORD_BYTES`."""
_COMPACTED: Mapping[str, str] = MappingProxyType(
    {
        **_BASE,
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.1",
        "segment.ms": "3600000",
    }
)
DEFAULT_CLOSED_RETENTION_MS = 7 * 24 * 3600 * 1000
"""Dedup window of ``{prefix}.closed``: how long a finished workflow id stays recognised."""

# The event log is the source of truth: never delete it by age or size.
_KEEP_FOREVER: Mapping[str, str] = MappingProxyType(
    {**_BASE, "retention.ms": "-1", "retention.bytes": "-1"}
)


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` or raise ``ValueError`` naming the rule it breaks."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"topic prefix {prefix!r} is invalid: use 1-100 characters from A-Z a-z 0-9 . _ -"
        )
    return prefix


def validate_queue(queue: str) -> str:
    """Return ``queue`` or raise ``ValueError`` naming the rule it breaks."""
    if not QUEUE_PATTERN.fullmatch(queue):
        raise ValueError(
            f"queue name {queue!r} is invalid: use 1-100 characters from A-Z a-z 0-9 _ -"
        )
    return queue


@dataclass(frozen=True)
class TopicNames:
    """The topic names for one prefix."""

    prefix: str

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def results(self) -> str:
        return f"{self.prefix}.results"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def snapshots(self) -> str:
        return f"{self.prefix}.snapshots"

    @property
    def closed(self) -> str:
        """Compacted, time-limited markers of finished workflows (key = workflow id)."""
        return f"{self.prefix}.closed"

    @property
    def definitions(self) -> str:
        return f"{self.prefix}.definitions"

    @property
    def principals(self) -> str:
        """Compacted signing keys and revocations of principals (ADR 0060)."""
        return f"{self.prefix}.principals"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def dlq_actions(self) -> str:
        """Compacted markers of redriven or discarded dead letters (key = ``partition:offset``
        of the DLQ record, ADR 0083)."""
        return f"{self.prefix}.dlq-actions"

    @property
    def tasks_prefix(self) -> str:
        """Common start of every task topic name (``{prefix}.tasks.``)."""
        return f"{self.prefix}.tasks."

    def tasks(self, queue: str) -> str:
        """The task topic of one node queue."""
        return f"{self.tasks_prefix}{validate_queue(queue)}"

    def queue_of(self, topic: str) -> str | None:
        """The queue a task topic belongs to, or ``None`` when ``topic`` is not a task topic."""
        if topic.startswith(self.tasks_prefix):
            queue = topic[len(self.tasks_prefix) :]
            return queue if QUEUE_PATTERN.fullmatch(queue) else None
        return None


def topic_names(prefix: str) -> TopicNames:
    """The topic names for ``prefix`` (validated)."""
    return TopicNames(prefix)


@dataclass(frozen=True)
class TopicSpec:
    """One topic to create: name, partition count and topic-level configuration."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1, got {self.partitions}")


def compacted_config() -> Mapping[str, str]:
    """Settings of a compacted topic that keeps the latest record per key."""
    return _COMPACTED


def closed_config(retention_ms: int = DEFAULT_CLOSED_RETENTION_MS) -> Mapping[str, str]:
    """Settings of ``{prefix}.closed``: compacted, and deleted after the dedup window."""
    if retention_ms < 1:
        raise ValueError(f"closed retention must be >= 1 ms, got {retention_ms}")
    return MappingProxyType(
        {**_COMPACTED, "cleanup.policy": "compact,delete", "retention.ms": str(retention_ms)}
    )


def principals_spec(names: TopicNames) -> TopicSpec:
    """``{prefix}.principals``: compacted, one partition, read whole by orchestrators."""
    return TopicSpec(names.principals, 1, _COMPACTED)


def topic_specs(
    prefix: str,
    partitions: int,
    queues: Iterable[str] = BUILTIN_QUEUES,
    closed_retention_ms: int = DEFAULT_CLOSED_RETENTION_MS,
) -> list[TopicSpec]:
    """Every topic kflow needs under ``prefix``, in a stable order.

    Topics keyed by workflow id (commands, results, events, snapshots, closed) share
    ``partitions`` so they are co-partitioned; task topics use it too. The
    definitions registry, the principals and the DLQ are small and read whole: one partition.
    ``closed_retention_ms`` is the duplicate-start window (see docs/adr/0032).
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    names = topic_names(prefix)
    specs = [
        TopicSpec(names.commands, partitions, _BASE),
        TopicSpec(names.results, partitions, _BASE),
        TopicSpec(names.events, partitions, _KEEP_FOREVER),
        TopicSpec(names.snapshots, partitions, _COMPACTED),
        TopicSpec(names.closed, partitions, closed_config(closed_retention_ms)),
        TopicSpec(names.definitions, 1, _COMPACTED),
        principals_spec(names),
        TopicSpec(names.dlq, 1, _BASE),
        TopicSpec(names.dlq_actions, 1, _COMPACTED),
    ]
    seen: set[str] = set()
    for queue in queues:
        if queue not in seen:
            seen.add(queue)
            specs.append(task_topic_spec(names, queue, partitions))
    return specs


@dataclass(frozen=True)
class TopicPolicy:
    """Replication of every kflow topic: replicas and ``min.insync.replicas``."""

    replication_factor: int
    min_insync_replicas: int


def resolve_policy(
    brokers: int, replication_factor: int | None = None, min_insync_replicas: int | None = None
) -> TopicPolicy:
    """The policy for a cluster of ``brokers`` (ADR 0006).

    Defaults: 3 replicas and ``min.insync.replicas`` 2 with at least three brokers, so one
    broker can be down without refusing or losing an acknowledged write; otherwise one
    replica per broker. Raises ``ValueError`` naming the variable when an override cannot work.
    """
    if brokers < 1:
        raise ValueError("the cluster reported no brokers")
    rf = replication_factor or min(3, brokers)
    if rf > brokers:
        raise ValueError(
            f"KFLOW_REPLICATION_FACTOR={rf} but the cluster has {brokers} broker(s): "
            f"set it to {brokers} or less"
        )
    isr = min_insync_replicas or max(1, rf - 1)
    if isr > rf:
        raise ValueError(
            f"KFLOW_MIN_INSYNC_REPLICAS={isr} is above the replication factor {rf}: "
            "every write would fail; set it to at most the replication factor"
        )
    return TopicPolicy(rf, isr)


@dataclass(frozen=True)
class TopicState:
    """An existing topic as the cluster describes it."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str]


@dataclass(frozen=True)
class TopicProblem:
    """An existing topic that differs from its spec; ``text`` says what and the fix."""

    topic: str
    kind: Literal["partitions", "cleanup", "replication", "record_limit"]
    text: str

    def __str__(self) -> str:
        return self.text


def topic_problems(
    specs: Iterable[TopicSpec], existing: Mapping[str, TopicState], policy: TopicPolicy | None
) -> list[TopicProblem]:
    """One problem per difference between an existing topic and its spec.

    Topics missing from ``existing`` are not problems (``kflow topics create`` makes them).
    """
    problems: list[TopicProblem] = []
    for spec in specs:
        state = existing.get(spec.name)
        if state is None:
            continue
        if state.partitions != spec.partitions:
            problems.append(
                TopicProblem(
                    spec.name,
                    "partitions",
                    f"{spec.name} has {state.partitions} partition(s), kflow expects "
                    f"{spec.partitions}: co-partitioned topics must all have the same count. "
                    f"Fix: set KFLOW_PARTITIONS={state.partitions} if the other topics have "
                    f"{state.partitions} too, else delete {spec.name} (when it holds nothing you "
                    "need) and run `kflow topics create`",
                )
            )
        wanted_policy = spec.config.get("cleanup.policy", "delete")
        have_policy = state.config.get("cleanup.policy", "delete")
        if sorted(wanted_policy.split(",")) != sorted(have_policy.split(",")):
            problems.append(
                TopicProblem(
                    spec.name,
                    "cleanup",
                    f"{spec.name} has cleanup.policy={have_policy}, kflow expects {wanted_policy}. "
                    "Fix: run `kflow topics create`, which sets it",
                )
            )
        wanted_limit = spec.config.get("max.message.bytes")
        have_limit = state.config.get("max.message.bytes")
        if wanted_limit and have_limit and int(have_limit) < int(wanted_limit):
            problems.append(
                TopicProblem(
                    spec.name,
                    "record_limit",
                    f"{spec.name} has max.message.bytes={have_limit}, kflow produces records up "
                    f"to {wanted_limit} bytes (ADR 0027): larger ones would be refused. "
                    "Fix: run `kflow topics create`, which sets it",
                )
            )
        if policy is not None and state.replication_factor < policy.replication_factor:
            problems.append(
                TopicProblem(
                    spec.name,
                    "replication",
                    f"{spec.name} has replication factor {state.replication_factor}, the topic "
                    f"policy is {policy.replication_factor}. Fix: raise it with "
                    "kafka-reassign-partitions.sh, or set "
                    f"KFLOW_REPLICATION_FACTOR={state.replication_factor} to accept it",
                )
            )
    return problems


def task_topic_spec(names: TopicNames, queue: str, partitions: int) -> TopicSpec:
    """The task topic of ``queue``, with the record limit every kflow topic has (ADR 0027);
    every place that creates a task topic on demand uses this."""
    return TopicSpec(names.tasks(queue), partitions, _BASE)
