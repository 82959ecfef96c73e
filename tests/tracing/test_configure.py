"""Tracing is configured by the standard OTEL_* variables and is off by default (ADR 0037)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from kflow.cli.run import service_command
from kflow.observability import tracing
from kflow.observability.tracing import TracingConfigError, configure_from_env
from kflow.processor.context import StepContext

# A service's start-up, one span, then exit (atexit flushes the batch processor).
ONE_SPAN = (
    "from kflow.observability import tracing\n"
    "assert tracing.configure_from_env('probe')\n"
    "tracing.tracer().start_span('probe span').end()\n"
)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
    ],
)
def test_off_unless_an_exporter_is_named(env: dict[str, str]) -> None:
    assert configure_from_env("orchestrator", env) is False
    assert not tracing.on()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: zipkin"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc'",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_the_fix(env: dict[str, str], names: str) -> None:
    with pytest.raises(TracingConfigError, match=names) as caught:
        configure_from_env("orchestrator", env)
    assert "otlp" in str(caught.value) or "http/protobuf" in str(caught.value)
    assert not tracing.on()


def test_a_service_refuses_to_start_with_a_bad_tracing_setting() -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "jaeger"}
    done = subprocess.run(
        service_command("run", "orchestrator"), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "OTEL_TRACES_EXPORTER: jaeger is not an exporter kflow has" in done.stderr
    assert "Traceback" not in done.stderr


def test_otlp_endpoint_variable_sends_spans_over_http(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    url, received = collector
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
    }
    subprocess.run([sys.executable, "-c", ONE_SPAN], env=env, check=True, timeout=60)
    assert [path for path, _ in received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(received[0][1])
    (resource,) = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert attributes["service.name"] == "kflow-probe"
    assert [s.name for scope in resource.scope_spans for s in scope.spans] == ["probe span"]


def test_otel_service_name_wins(collector: tuple[str, list[tuple[str, bytes]]]) -> None:
    url, received = collector
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
        "OTEL_SERVICE_NAME": "billing-orchestrator",
    }
    subprocess.run([sys.executable, "-c", ONE_SPAN], env=env, check=True, timeout=60)
    request = ExportTraceServiceRequest.FromString(received[0][1])
    names = {
        a.value.string_value
        for r in request.resource_spans
        for a in r.resource.attributes
        if a.key == "service.name"
    }
    assert names == {"billing-orchestrator"}


def test_step_context_has_no_trace_while_off() -> None:
    ctx = StepContext("w", "w/n", "n", "echo", 1, "w/n#1", 0)
    assert ctx.traceparent is None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"garbage",
        b"\xff\xfe-not-ascii",
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    ],
)
def test_a_malformed_traceparent_header_is_ignored(value: bytes) -> None:
    assert tracing.parent_from({"traceparent": value}) is None


def test_a_valid_traceparent_header_names_its_parent() -> None:
    parent = tracing.parent_from(
        {"traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    )
    assert parent is not None
    span = trace.get_current_span(parent).get_span_context()
    assert (span.trace_id, span.span_id, span.is_remote) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        True,
    )
