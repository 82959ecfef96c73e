"""`kflow run orchestrator|processor` subprocesses export one workflow's spans over OTLP/HTTP.

Only the standard variable is set (``OTEL_EXPORTER_OTLP_ENDPOINT``); the collector is a local
stand-in that decodes what it receives.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from kflow.observability import tracing
from kflow.settings import Settings
from tests.runtime.conftest import Runtime, types_of
from tests.runtime.services import ServiceProcesses
from tests.tracing.conftest import Spans

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=4, queues=("default",))]

DEFINITION = {
    "name": "exported",
    "nodes": [
        {"id": "a", "type": "echo", "queue": "default", "input": {"x": 1}},
        {"id": "b", "type": "echo", "queue": "default", "depends_on": ["a"], "input": {"y": 2}},
    ],
}


@pytest.fixture
def traced_services(
    collector: tuple[str, list[tuple[str, bytes]]],
    isolated_settings: Settings,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ServiceProcesses]:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector[0])
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    settings = isolated_settings.model_copy(update={"partitions": 4})  # as the topics have
    procs = ServiceProcesses(settings, redis_prefix, tmp_path)
    procs.start("orchestrator-0")
    procs.start("processor-0")
    try:
        yield procs
    finally:
        procs.stop_all()


def _exported(received: list[tuple[str, bytes]]) -> dict[str, list[tuple[str, str]]]:
    """service.name -> [(span name, trace id hex)] of every span the collector received."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path, body in received:
        assert path == "/v1/traces"
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            spans = found.setdefault(attrs["service.name"], [])
            for scope in resource.scope_spans:
                spans += [(s.name, s.trace_id.hex()) for s in scope.spans]
    return found


def test_services_export_the_workflow_trace_over_otlp(
    spans: Spans,
    traced_services: ServiceProcesses,
    runtime_factory: Runtime,
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    runtime_factory.apply(DEFINITION)
    with tracing.tracer().start_as_current_span("caller") as caller:
        workflow_id = runtime_factory.start("exported")
    events = runtime_factory.wait_final([workflow_id])[workflow_id]
    assert types_of(events)[-1] == "WorkflowCompleted"
    traced_services.stop_all()  # SIGTERM: each service flushes its spans as it exits
    trace_id = f"{caller.get_span_context().trace_id:032x}"
    exported = _exported(collector[1])
    orchestrator = [name for name, t in exported["kflow-orchestrator"] if t == trace_id]
    processor = [name for name, t in exported["kflow-processor"] if t == trace_id]
    assert orchestrator == ["decide StartWorkflow", "decide StepResult", "decide StepResult"]
    assert processor == ["step a", "step b"]
