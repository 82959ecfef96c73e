"""Tracing fixtures: spans collected in memory while kflow's tracing is on (ADR 0037)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kflow.observability import tracing
from tests.readside.conftest import api, free_port, make_key, readside
from tests.runtime.conftest import Runtime, runtime_factory

__all__ = ["Runtime", "api", "make_key", "readside", "runtime_factory"]


class Spans:
    """The finished spans of the test, with lookups by name and id."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def of_workflow(self, workflow_id: str) -> list[ReadableSpan]:
        """kflow's spans about ``workflow_id`` (decisions, step attempts, sends)."""
        return [
            s for s in self.all() if (s.attributes or {}).get("kflow.workflow_id") == workflow_id
        ]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Tracing on, into an in-memory exporter, for this test only (off again afterwards)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield Spans(exporter)
    finally:
        tracing.disable()
        provider.shutdown()


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A stand-in OTLP/HTTP collector on a local port (records each export request)."""
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    thread.join(10)
    server.server_close()
