"""Tracing: W3C ``traceparent`` on Kafka headers, OpenTelemetry spans, off by default (ADR 0037).

A workflow is one trace: the span that sent its StartWorkflow (an HTTP request, a
:class:`kflow.Client` call, an outbox row's writer) is the root's ancestor, each orchestrator
decision is a span whose parent is the record that caused it, each step attempt is a span
whose parent is its task, and the result goes back with the attempt's context. Decisions
without a causing record (timers) continue from the workflow's last decision.

Off unless a ``kflow run`` service finds an exporter in the standard ``OTEL_*`` variables
(:func:`configure_from_env`) or code calls :func:`enable`. While off the hot paths test
:func:`on` and do nothing else: no spans, no headers.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    Tracer,
    TracerProvider,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from kflow.bus.message import TRACE_HEADER
from kflow.core.errors import KflowError

INSTRUMENTATION = "kflow"

_W3C = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None

__all__ = [
    "TRACE_HEADER",
    "Context",
    "Span",
    "SpanKind",
    "StatusCode",
    "TracingConfigError",
    "configure_from_env",
    "context_of",
    "current_span_context",
    "current_traceparent",
    "disable",
    "enable",
    "on",
    "parent_from",
    "provider",
    "traceparent_of",
    "tracer",
    "use_span",
]


class TracingConfigError(KflowError, ValueError):
    """An ``OTEL_*`` variable asks for something kflow cannot do; the message names it."""


def on() -> bool:
    """Whether kflow makes spans in this process (the hot paths' only cost when off)."""
    return _tracer is not None


def tracer() -> Tracer:
    """kflow's tracer; only call it when :func:`on`."""
    if _tracer is None:
        raise RuntimeError("tracing is off; check kflow.observability.tracing.on() first")
    return _tracer


def provider() -> TracerProvider | None:
    """The provider kflow's spans go to (``None`` while off); for instrumenting libraries."""
    return _provider


def enable(provider: TracerProvider | None = None) -> None:
    """Make spans from now on with ``provider`` (default: OpenTelemetry's global provider).

    A service that set up the OpenTelemetry SDK itself calls ``enable()``; tests pass a
    provider with an in-memory exporter.
    """
    global _tracer, _provider
    _provider = provider if provider is not None else trace.get_tracer_provider()
    _tracer = _provider.get_tracer(INSTRUMENTATION)


def disable() -> None:
    """Stop making spans (headers already written stay as they are)."""
    global _tracer, _provider
    _tracer = _provider = None


def configure_from_env(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for a ``kflow run`` service when the ``OTEL_*`` variables ask for it.

    On when ``OTEL_TRACES_EXPORTER`` names ``otlp`` or ``console``, or, with it unset, when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set;
    ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keeps it off. The OTLP
    exporter speaks http/protobuf and reads its own variables (endpoint, headers, timeout);
    the SDK reads ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` and ``OTEL_RESOURCE_ATTRIBUTES``.
    ``service.name`` is ``kflow-<service>`` unless ``OTEL_SERVICE_NAME`` says otherwise.
    Returns whether tracing is on; raises :class:`TracingConfigError` for a bad value.
    """
    env = os.environ if environ is None else environ
    exporters = _exporter_names(env)
    if not exporters:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes: dict[str, Any] = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes[SERVICE_NAME] = f"kflow-{service}"
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Global too, so spans node code makes (its own HTTP or DB instrumentation) join in.
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # export what is buffered when the service stops
    enable(provider)
    return True


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = env.get("OTEL_TRACES_EXPORTER")
    if raw is None or not raw.strip():
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    else:
        names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in ("otlp", "console")]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not an exporter kflow has; "
            "use otlp, console or none"
        )
    if "otlp" in names:
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol.strip() != "http/protobuf":
            raise TracingConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; kflow exports "
                "OTLP over http/protobuf (collector port 4318): set it to http/protobuf"
            )
    return names


def context_of(traceparent: str | None) -> Context | None:
    """The parent context a ``traceparent`` value names (``None`` if absent or malformed)."""
    if not traceparent:
        return None
    found = _W3C.extract({TRACE_HEADER: traceparent})
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def parent_from(headers: Mapping[str, bytes]) -> Context | None:
    """The parent context a consumed record's headers carry."""
    value = headers.get(TRACE_HEADER)
    return context_of(value.decode("ascii", "replace")) if value else None


def traceparent_of(span: Span) -> str | None:
    """The ``traceparent`` value that makes ``span`` the parent of what follows."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_span_context() -> SpanContext:
    """The current span's context (invalid when there is none)."""
    return trace.get_current_span().get_span_context()


def current_traceparent() -> str | None:
    """The ``traceparent`` of the caller's current span (its own OpenTelemetry setup's too)."""
    return traceparent_of(trace.get_current_span())
