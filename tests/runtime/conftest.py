"""A kflow runtime per test: orchestrator and processor threads on the test's own topics."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

import tests.runtime.nodes  # noqa: F401  (registers the test node types)
from kflow.bus.commands import CommandPublisher
from kflow.bus.contracts import decode
from kflow.bus.credentials import command_signer
from kflow.bus.envelope import envelope_meta
from kflow.bus.reader import TopicReader
from kflow.bus.topics import topic_names
from kflow.core.definition import WorkflowDefinition, parse_definition
from kflow.core.events import Event, is_final
from kflow.core.inputs import Input, StartWorkflow
from kflow.orchestrator.service import OrchestratorConfig, OrchestratorService
from kflow.processor.registry import load_node_modules, registry
from kflow.processor.service import ProcessorConfig, ProcessorService
from kflow.registry.topic import publish_definition
from kflow.settings import Settings

TEST_QUEUES = ("default", "other")
WAIT_S = 90.0  # a safety net against hangs, not a speed assertion


@dataclass
class Runtime:
    """Running services plus helpers to drive workflows and read their events."""

    settings: Settings
    redis_prefix: str
    orchestrators: list[tuple[OrchestratorService, threading.Thread]] = field(default_factory=list)
    processors: list[tuple[ProcessorService, threading.Thread]] = field(default_factory=list)
    publisher: CommandPublisher | None = None
    events: dict[str, list[Event]] = field(default_factory=dict)
    _reader: TopicReader | None = None

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    def start_orchestrator(
        self,
        instance: str = "orchestrator-0",
        finished_capacity: int | None = None,
        retry_window_ms: int | None = None,
        require_signatures: bool = True,
    ) -> OrchestratorService:
        """Start one (the same ``instance`` again is a restart); ``finished_capacity`` shrinks
        the in-memory window of finished workflows. Unsigned commands are refused, as in
        production; ``require_signatures=False`` is the migration mode."""
        config = OrchestratorConfig(
            bootstrap=self.settings.kafka_bootstrap,
            topic_prefix=self.prefix,
            instance_id=instance,
            partitions=2,
            require_signatures=require_signatures,
        )
        if finished_capacity is not None:
            config = replace(config, finished_capacity=finished_capacity)
        if retry_window_ms is not None:
            config = replace(config, retry_window_ms=retry_window_ms)
        service = OrchestratorService(config)
        thread = threading.Thread(target=service.run, name=instance, daemon=True)
        thread.start()
        self.orchestrators.append((service, thread))
        return service

    def start_processor(self, queue: str = "default", concurrency: int = 8) -> ProcessorService:
        service = ProcessorService(
            ProcessorConfig(
                bootstrap=self.settings.kafka_bootstrap,
                topic_prefix=self.prefix,
                queue=queue,
                redis_url=self.settings.redis_url,
                concurrency=concurrency,
                redis_key_prefix=self.redis_prefix.rstrip(":"),
            ),
            registry,
        )
        thread = threading.Thread(target=service.run, name=f"processor-{queue}", daemon=True)
        thread.start()
        self.processors.append((service, thread))
        return service

    def apply(self, definition: dict[str, Any] | WorkflowDefinition) -> WorkflowDefinition:
        defn = parse_definition(definition)
        publish_definition(self.settings.kafka_bootstrap, self.prefix, defn)
        return defn

    def send(self, command: Input) -> None:
        if self.publisher is None:
            self.publisher = CommandPublisher(
                self.settings.kafka_bootstrap,
                self.prefix,
                timeout_s=30,
                component="test",
                signer=command_signer(self.settings, "the test's command"),
            )
        self.publisher.publish(command, envelope_meta(command, actor="test"))

    def start(self, name: str, input: Any = None, workflow_id: str | None = None) -> str:
        workflow_id = workflow_id or f"wf-{uuid.uuid4().hex[:10]}"
        self.send(StartWorkflow(workflow_id=workflow_id, name=name, version=0, input=input))
        return workflow_id

    def _read(self) -> None:
        if self._reader is None:
            self._reader = TopicReader(
                self.settings.kafka_bootstrap, topic_names(self.prefix).events
            )
        for record in self._reader.poll(0.1):
            body = decode(record.value).body if record.value else None
            if isinstance(body, Event):
                self.events.setdefault(body.workflow_id, []).append(body)

    def wait_for(self, workflow_id: str, type_name: str) -> list[Event]:
        """Events of ``workflow_id`` once one of type ``type_name`` arrived."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self._read()
            if any(type(e).__name__ == type_name for e in self.events.get(workflow_id, [])):
                return self.events[workflow_id]
        raise AssertionError(
            f"{workflow_id}: no {type_name} within {WAIT_S}s; got "
            f"{[type(e).__name__ for e in self.events.get(workflow_id, [])]}"
        )

    def wait_final(self, workflow_ids: list[str]) -> dict[str, list[Event]]:
        """Events of each workflow once every one of them ended (completed/failed/...)."""
        deadline = time.monotonic() + WAIT_S * max(1, len(workflow_ids) // 200)
        pending = set(workflow_ids)
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending)} workflows did not end, e.g. {sorted(pending)[:3]}"
                )
            self._read()
            pending = {w for w in pending if not any(is_final(e) for e in self.events.get(w, []))}
        return {w: self.events[w] for w in workflow_ids}

    def stop(self) -> None:
        for processor, _ in self.processors:
            processor.stop()
        for orchestrator, _ in self.orchestrators:
            orchestrator.stop()
        for _, thread in [*self.processors, *self.orchestrators]:
            thread.join(30)
        if self._reader is not None:
            self._reader.close()
        if self.publisher is not None:
            self.publisher.close()


@pytest.fixture
def runtime_factory(isolated_settings: Settings, redis_prefix: str) -> Iterator[Runtime]:
    """A Runtime with nothing started yet (start services yourself)."""
    load_node_modules([])
    rt = Runtime(isolated_settings, redis_prefix)
    yield rt
    rt.stop()


@pytest.fixture
def runtime(runtime_factory: Runtime) -> Runtime:
    """A Runtime with one orchestrator and one processor on queue ``default``."""
    runtime_factory.start_orchestrator()
    runtime_factory.start_processor("default")
    return runtime_factory


def types_of(events: list[Event]) -> list[str]:
    """Event type names, in log order."""
    return [type(e).__name__ for e in events]
