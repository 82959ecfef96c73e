"""Kafka topic administration (create, list, delete) with the confluent-kafka AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition

# Public names of confluent_kafka.admin that its type hints do not re-export explicitly.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from kflow.bus.clients import make_admin
from kflow.bus.errors import BusError
from kflow.bus.topics import TopicPolicy, TopicSpec, TopicState, resolve_policy
from kflow.settings import Settings, get_settings


class TopicAdminError(BusError):
    """A topic could not be created, listed or deleted; the message names the topic and why."""


@dataclass(frozen=True)
class TopicInfo:
    """A topic as the broker reports it: partition count and end offset per partition."""

    name: str
    partitions: int
    end_offsets: tuple[int, ...]

    @property
    def records(self) -> int:
        """Sum of end offsets (an upper bound on the records ever written)."""
        return sum(self.end_offsets)


def admin_client(bootstrap: str, timeout_s: float = 10.0, quiet: bool = False) -> AdminClient:
    """An AdminClient for ``bootstrap`` (``host:port[,host:port]``).

    ``quiet`` silences librdkafka's own connection errors, for probes whose caller reports.
    """
    return make_admin(
        bootstrap,
        overrides={"socket.timeout.ms": int(timeout_s * 1000), "log_level": 0 if quiet else 3},
    )


def broker_reachable(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request within ``timeout_s``."""
    try:
        metadata = admin_client(bootstrap, timeout_s, quiet=True).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def cluster_policy(
    bootstrap: str, settings: Settings | None = None, timeout_s: float = 10.0
) -> TopicPolicy:
    """The topic policy for the cluster at ``bootstrap``: its broker count decides the
    defaults, ``KFLOW_REPLICATION_FACTOR`` / ``KFLOW_MIN_INSYNC_REPLICAS`` override them."""
    s = settings or get_settings()
    try:
        brokers = len(admin_client(bootstrap, timeout_s).list_topics(timeout=timeout_s).brokers)
    except KafkaException as e:
        raise TopicAdminError(f"Kafka at {bootstrap} did not answer: {e.args[0].str()}") from e
    try:
        return resolve_policy(brokers, s.replication_factor, s.min_insync_replicas)
    except ValueError as e:
        raise TopicAdminError(str(e)) from e


def describe_topics(
    bootstrap: str, names: Iterable[str], timeout_s: float = 10.0
) -> dict[str, TopicState]:
    """The existing topics among ``names``: partitions, replicas and configuration."""
    admin = admin_client(bootstrap, timeout_s)
    try:
        metadata = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as e:
        raise TopicAdminError(f"Kafka at {bootstrap} did not answer: {e.args[0].str()}") from e
    found = {n: metadata[n] for n in names if n in metadata and metadata[n].error is None}
    if not found:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in found], request_timeout=timeout_s
    )
    configs: dict[str, dict[str, str]] = {}
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as e:
            raise TopicAdminError(
                f"could not describe topic {resource.name}: {e.args[0].str()}"
            ) from e
        configs[resource.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    return {
        name: TopicState(
            name,
            len(t.partitions),
            min((len(p.replicas) for p in t.partitions.values()), default=0),
            configs.get(name, {}),
        )
        for name, t in found.items()
    }


def create_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    timeout_s: float = 30.0,
    policy: TopicPolicy | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (one admin request); return the names created.

    Replicas and ``min.insync.replicas`` follow ``policy`` (:func:`cluster_policy` when
    not given). Idempotent: for a topic that already exists, the configuration entries of
    its spec are set again (other entries and the partition count are left as they are).
    """
    if not specs:
        return []
    policy = policy or cluster_policy(bootstrap, timeout_s=timeout_s)
    isr = {"min.insync.replicas": str(policy.min_insync_replicas)}
    specs = [TopicSpec(s.name, s.partitions, {**s.config, **isr}) for s in specs]
    admin = admin_client(bootstrap, timeout_s)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=policy.replication_factor,
            config=dict(s.config),
        )
        for s in specs
    ]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    created: list[str] = []
    problems: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as e:
            err: KafkaError = e.args[0]
            if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                problems.append(f"{name}: {err.str()}")
    if problems:
        raise TopicAdminError(
            f"could not create topics at {bootstrap}: " + "; ".join(sorted(problems))
        )
    existing = [s for s in specs if s.name not in created and s.config]
    if existing:
        _set_configs(admin, existing, timeout_s)
    _wait_until_served(admin, {s.name: s.partitions for s in specs}, timeout_s)
    return sorted(created)


def _set_configs(admin: AdminClient, specs: Sequence[TopicSpec], timeout_s: float) -> None:
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            s.name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in sorted(s.config.items())
            ],
        )
        for s in specs
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=timeout_s)
    for resource, future in futures.items():
        try:
            future.result()
        except KafkaException as e:
            raise TopicAdminError(
                f"could not set the configuration of {resource.name}: {e.args[0].str()}"
            ) from e


def _wait_until_served(admin: AdminClient, wanted: dict[str, int], timeout_s: float) -> None:
    """Block until every partition of ``wanted`` answers ListOffsets.

    CreateTopics returns before the broker serves the new partitions; until then
    produce and ListOffsets fail with NOT_LEADER_OR_FOLLOWER.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=max(0.1, deadline - time.monotonic())).topics
        if all(
            name in topics and topics[name].error is None and len(topics[name].partitions) >= n
            for name, n in wanted.items()
        ):
            break
        if time.monotonic() > deadline:
            raise TopicAdminError(f"topics not in metadata after {timeout_s}s: {sorted(wanted)}")
        time.sleep(0.05)
    _end_offsets(
        admin, [TopicPartition(t, p) for t, n in wanted.items() for p in range(n)], deadline
    )


# Seen right after CreateTopics while the new partitions' leadership settles.
_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.REPLICA_NOT_AVAILABLE,
}


def _end_offsets(
    admin: AdminClient,
    partitions: Sequence[TopicPartition],
    deadline: float,
    isolation: IsolationLevel = IsolationLevel.READ_UNCOMMITTED,
) -> dict[tuple[str, int], int]:
    """End offset of each partition (the last stable offset under READ_COMMITTED);
    retries partitions whose leader is not ready yet."""
    ends: dict[tuple[str, int], int] = {}
    pending = list(partitions)
    while pending:
        request = {tp: OffsetSpec.latest() for tp in pending}  # type: ignore[no-untyped-call]
        timeout_s = max(1.0, deadline - time.monotonic())
        retry: list[TopicPartition] = []
        answers = admin.list_offsets(request, request_timeout=timeout_s, isolation_level=isolation)
        for tp, future in answers.items():
            try:
                ends[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException as e:
                err: KafkaError = e.args[0]
                not_ready = err.code() in _NOT_READY or err.retriable()
                if not not_ready or time.monotonic() > deadline:
                    raise TopicAdminError(
                        f"end offset of {tp.topic}[{tp.partition}] unavailable: {err.str()}"
                    ) from e
                retry.append(TopicPartition(tp.topic, tp.partition))
        if retry:
            time.sleep(0.1)
        pending = retry
    return ends


def wait_until_stable(
    bootstrap: str, topic: str, partitions: Iterable[int], timeout_s: float = 60.0
) -> None:
    """Wait until no transaction is open on ``partitions`` of ``topic``.

    A read_committed reader stops at the last stable offset (LSO), the first record of
    the oldest open transaction. State restored from such a reader can be older than
    the consumed offsets committed with it once that transaction commits, so restores
    wait until the LSO reaches the high watermark: the open transaction committed, was
    aborted by its producer's successor, or timed out at the broker
    (``transaction.timeout.ms`` plus the broker's abort check interval).
    """
    wanted = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not wanted:
        return
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    while True:
        lookup_deadline = time.monotonic() + 10
        high = _end_offsets(admin, wanted, lookup_deadline)
        stable = _end_offsets(admin, wanted, lookup_deadline, IsolationLevel.READ_COMMITTED)
        open_ = sorted(p for (_t, p), end in high.items() if stable[(topic, p)] < end)
        if not open_:
            return
        if time.monotonic() > deadline:
            raise TopicAdminError(
                f"{topic} partitions {open_} still have an open transaction after "
                f"{timeout_s:.0f}s; is transaction.timeout.ms above {timeout_s:.0f}s?"
            )
        time.sleep(0.2)


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete ``names``; topics that do not exist are ignored."""
    wanted = list(names)
    if not wanted:
        return
    admin = admin_client(bootstrap, timeout_s)  # keep a reference until the futures resolve
    futures = admin.delete_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
    problems: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as e:
            err: KafkaError = e.args[0]
            if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                problems.append(f"{name}: {err.str()}")
    if problems:
        raise TopicAdminError(f"could not delete topics: {'; '.join(sorted(problems))}")


def list_topics(bootstrap: str, prefix: str = "", timeout_s: float = 10.0) -> list[TopicInfo]:
    """Topics whose name starts with ``prefix`` (internal ``__`` topics excluded), by name."""
    admin = admin_client(bootstrap, timeout_s)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as e:
        raise TopicAdminError(f"Kafka at {bootstrap} did not answer: {e.args[0].str()}") from e
    topics = {
        name: sorted(t.partitions)
        for name, t in metadata.topics.items()
        if name.startswith(prefix) and not name.startswith("__") and t.error is None
    }
    if not topics:
        return []
    deadline = time.monotonic() + timeout_s
    ends = _end_offsets(
        admin, [TopicPartition(name, p) for name, parts in topics.items() for p in parts], deadline
    )
    return [
        TopicInfo(name, len(parts), tuple(ends[(name, p)] for p in parts))
        for name, parts in sorted(topics.items())
    ]


def topic_config(bootstrap: str, name: str, timeout_s: float = 10.0) -> dict[str, str]:
    """The effective configuration of topic ``name`` (every entry, defaults included)."""
    admin = admin_client(bootstrap, timeout_s)
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name)], request_timeout=timeout_s
    )
    try:
        entries = next(iter(futures.values())).result()
    except KafkaException as e:
        raise TopicAdminError(f"could not describe topic {name}: {e.args[0].str()}") from e
    return {key: entry.value for key, entry in entries.items() if entry.value is not None}
