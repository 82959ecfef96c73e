"""Wire the orchestrator handler onto the bus's exactly-once loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException

from kflow.bus.admin import TopicAdminError, admin_client, create_topics
from kflow.bus.clients import ConfigValue
from kflow.bus.contracts import Envelope, decode
from kflow.bus.eos import EosConfig, EosLoop, system_clock_ms
from kflow.bus.errors import RetryableError
from kflow.bus.layout import check_layout
from kflow.bus.principals import PrincipalDirectory
from kflow.bus.topics import (
    DEFAULT_CLOSED_RETENTION_MS,
    TopicNames,
    TopicSpec,
    closed_config,
    principals_spec,
    task_topic_spec,
    topic_names,
)
from kflow.core.definition import WorkflowDefinition
from kflow.core.limits import Limits
from kflow.core.state import WorkflowState
from kflow.observability import tracing
from kflow.observability.health import HEALTH
from kflow.orchestrator.closed import ClosedMarker, restore_closed
from kflow.orchestrator.handler import OrchestratorHandler
from kflow.orchestrator.identity import Authenticator
from kflow.orchestrator.retained import DEFAULT_RETRY_WINDOW_MS
from kflow.orchestrator.snapshots import restore_partitions
from kflow.registry.topic import DefinitionFollower

log = logging.getLogger(__name__)

LOW_LATENCY_CONSUMER: dict[str, ConfigValue] = {
    # commands-p and results-p must land on the same instance (they hold the same
    # workflows): range assignment gives partition p of both topics to one member.
    "partition.assignment.strategy": "range",
    "fetch.wait.max.ms": 5,
}
LOW_LATENCY_PRODUCER: dict[str, ConfigValue] = {"linger.ms": 1}


@dataclass
class OrchestratorConfig:
    """Settings of one orchestrator process."""

    bootstrap: str
    topic_prefix: str
    instance_id: str = "orchestrator-0"
    """Stable per slot: a restart with the same id fences its dead predecessor at once."""
    partitions: int = 4
    """Partitions for task topics created on first use."""
    max_batch_ms: int = 5
    batch_size: int = 500
    max_payload_bytes: int = 1_000_000
    closed_retention_ms: int = DEFAULT_CLOSED_RETENTION_MS
    """Dedup window: a finished workflow id is refused a second start this long (ADR 0032).
    Also the ``retention.ms`` of ``{prefix}.closed`` when this process has to create it."""
    finished_capacity: int = 10_000
    """Finished workflow states kept whole in memory (closed ids are kept regardless)."""
    retry_window_ms: int = DEFAULT_RETRY_WINDOW_MS
    """How long a failed or cancelled run can be retried; its snapshot is kept that long
    (ADR 0082). 0 disables ``RetryWorkflow``."""
    require_signatures: bool = True
    """Refuse unsigned commands (signed ones are always verified; ADR 0060, 0061)."""
    consumer_overrides: dict[str, ConfigValue] = field(default_factory=dict)
    producer_overrides: dict[str, ConfigValue] = field(default_factory=dict)


class OrchestratorService:
    """One orchestrator process: the definitions follower plus the EOS loop."""

    def __init__(
        self, config: OrchestratorConfig, clock_ms: Callable[[], int] = system_clock_ms
    ) -> None:
        self.config = config
        names = topic_names(config.topic_prefix)
        check_layout(
            config.bootstrap,
            config.topic_prefix,
            [names.commands, names.results, names.events, names.snapshots, names.definitions],
            partitions=config.partitions,
        )
        ensure_closed_topic(config.bootstrap, names, config.closed_retention_ms)
        self.definitions = DefinitionFollower(config.bootstrap, config.topic_prefix)
        self.definitions.catch_up()
        self.definitions.start()
        ensure_principals_topic(config.bootstrap, names)
        self.principals = PrincipalDirectory(config.bootstrap, config.topic_prefix)
        self.principals.catch_up()
        self.principals.start()
        self._known_queues: set[str] = set()
        self.handler = OrchestratorHandler(
            names,
            definitions=self._resolve,
            restore=self._restore,
            clock_ms=clock_ms,
            ensure_queue=self._ensure_queue,
            limits=Limits(max_payload_bytes=config.max_payload_bytes),
            restore_closed=self._restore_closed,
            finished_capacity=config.finished_capacity,
            closed_window_ms=config.closed_retention_ms,
            retry_window_ms=config.retry_window_ms,
            authenticator=Authenticator(self.principals, config.require_signatures),
        )
        self._stop = threading.Event()
        self.loop: EosLoop[Envelope] = EosLoop(
            EosConfig(
                bootstrap=config.bootstrap,
                group_id=f"{config.topic_prefix}.orchestrator",
                instance_id=config.instance_id,
                topics=(names.commands, names.results),
                dlq_topic=names.dlq,
                component="orchestrator",
                batch_size=config.batch_size,
                max_batch_ms=config.max_batch_ms,
                consumer_overrides={**LOW_LATENCY_CONSUMER, **config.consumer_overrides},
                producer_overrides={**LOW_LATENCY_PRODUCER, **config.producer_overrides},
            ),
            self.handler,
            decode,
            clock_ms=clock_ms,
        )

    def run(self) -> None:
        """Run until :meth:`stop`."""
        try:
            self.loop.run(self._stop.is_set)
        finally:
            self.definitions.close()
            self.principals.close()

    def stop(self) -> None:
        """Finish the current batch and leave the group."""
        self._stop.set()

    def _resolve(self, name: str, version: int) -> WorkflowDefinition | None:
        found = self.definitions.store.resolve(name, version)
        if found is None:
            # Maybe applied a moment ago: read the topic to its end once before rejecting.
            self.definitions.catch_up()
            found = self.definitions.store.resolve(name, version)
        return found

    def _restore(self, partitions: Sequence[int]) -> dict[int, dict[str, WorkflowState]]:
        # not ready while the state of newly assigned partitions is read back
        HEALTH.report("state", False, f"restoring partitions {sorted(partitions)}")
        restored = restore_partitions(
            self.config.bootstrap,
            topic_names(self.config.topic_prefix).snapshots,
            partitions,
            traces=self.handler.traces if tracing.on() else None,
        )
        HEALTH.report("state", True)
        return restored

    def _restore_closed(self, partitions: Sequence[int]) -> dict[int, list[ClosedMarker]]:
        return restore_closed(
            self.config.bootstrap, topic_names(self.config.topic_prefix).closed, partitions
        )

    def _ensure_queue(self, queue: str) -> None:
        if queue in self._known_queues:
            return
        names = topic_names(self.config.topic_prefix)
        topic = names.tasks(queue)
        try:
            create_topics(
                self.config.bootstrap, [task_topic_spec(names, queue, self.config.partitions)]
            )
        except TopicAdminError as e:  # retry the batch rather than dead-letter its inputs
            raise RetryableError(f"cannot create task topic {topic}: {e}") from e
        self._known_queues.add(queue)


def ensure_closed_topic(bootstrap: str, names: TopicNames, retention_ms: int) -> None:
    """Create ``{prefix}.closed`` (as many partitions as commands) if an older
    ``kflow topics create`` did not; without it every finishing batch would abort."""
    try:
        topics = admin_client(bootstrap).list_topics(timeout=10).topics
    except KafkaException as e:
        raise TopicAdminError(f"Kafka at {bootstrap} did not answer: {e}") from e
    if names.closed in topics or names.commands not in topics:
        return  # no commands topic: the EOS loop reports the missing topics
    partitions = len(topics[names.commands].partitions)
    create_topics(bootstrap, [TopicSpec(names.closed, partitions, closed_config(retention_ms))])
    log.info("created %s with %d partitions", names.closed, partitions)


def ensure_principals_topic(bootstrap: str, names: TopicNames) -> None:
    """Create ``{prefix}.principals`` if an older ``kflow topics create`` did not."""
    try:
        topics = admin_client(bootstrap).list_topics(timeout=10).topics
    except KafkaException as e:
        raise TopicAdminError(f"Kafka at {bootstrap} did not answer: {e}") from e
    if names.principals not in topics:
        create_topics(bootstrap, [principals_spec(names)])
