"""Tracing cost on the hot paths (a script, not a test): prints µs per record, off vs on.

    .venv/bin/python bench/tracing_bench.py [--workflows 2000] [--rounds 5]

* orchestrator: ``OrchestratorHandler.handle`` + ``end_batch`` + ``committed`` for every input
  of N four-step diamonds (one StartWorkflow and four StepResults each), no Kafka: CPU per
  input record with tracing off, on (SDK, every span sampled, batch processor, an exporter
  that drops), and on with nothing sampled (the traceparent still travels);
* processor: the work ``_run_traced`` adds around one step attempt (read the header, start
  the span, make it current, describe the outcome, end it), per step.

Best of ``--rounds``. Runs against any checkout: without kflow.observability.tracing (main
before ADR 0037) it measures the orchestrator with no tracing code at all.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from kflow.bus.contracts import Envelope, decode, encode_input
from kflow.bus.envelope import envelope_meta
from kflow.bus.message import BusMessage, OutRecord
from kflow.bus.records import ExecuteStep
from kflow.bus.topics import topic_names
from kflow.core.definition import parse_definition
from kflow.core.inputs import Input, StartWorkflow, StepResult
from kflow.orchestrator.handler import OrchestratorHandler
from kflow.orchestrator.identity import Authenticator, NoKeys

try:
    from kflow.observability import tracing
except ImportError:  # a checkout before tracing
    tracing = None  # type: ignore[assignment]

NAMES = topic_names("bench")
DIAMOND = parse_definition(
    {
        "name": "diamond",
        "nodes": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "noop", "depends_on": ["a"]},
            {"id": "c", "type": "noop", "depends_on": ["a"]},
            {"id": "d", "type": "noop", "depends_on": ["b", "c"]},
        ],
    }
)
BATCH = 200


def _message(command: Input, headers: dict[str, bytes], offset: int) -> BusMessage[Envelope]:
    data = encode_input(command, envelope_meta(command, actor="bench"))
    topic = NAMES.commands if isinstance(command, StartWorkflow) else NAMES.results
    return BusMessage(topic, 0, offset, command.workflow_id, data, decode(data), headers)


def _results_of(records: Sequence[OutRecord]) -> list[tuple[StepResult, dict[str, bytes]]]:
    """A StepResult (with the task's headers, as a processor sends them) for each task."""
    found = []
    for record in records:
        if record.topic.startswith(NAMES.tasks_prefix) and record.value is not None:
            task = decode(record.value).body
            assert isinstance(task, ExecuteStep)
            result = StepResult(
                workflow_id=task.workflow_id,
                step_key=task.step_key,
                attempt=task.attempt,
                output={"ok": True},
            )
            found.append((result, dict(record.headers)))
    return found


def run_orchestrator(workflows: int) -> float:
    """CPU seconds per input record to drive ``workflows`` diamonds to completion."""
    handler = OrchestratorHandler(
        NAMES,
        definitions=lambda name, version: DIAMOND,
        restore=lambda partitions: {},
        clock_ms=lambda: 1_000,
        # unsigned commands accepted: this measures tracing, not verification (ADR 0060)
        authenticator=Authenticator(NoKeys(), require_signatures=False),
    )
    pending: list[BusMessage[Envelope]] = [
        _message(StartWorkflow(workflow_id=f"w{i}", name="diamond", version=1, input=i), {}, i)
        for i in range(workflows)
    ]
    inputs = 0
    cpu = 0.0
    while pending:
        batch, pending = pending[:BATCH], pending[BATCH:]
        started = time.process_time()
        out: list[OutRecord] = []
        for message in batch:
            out.extend(handler.handle(message))
        out.extend(handler.end_batch())
        handler.committed()
        cpu += time.process_time() - started
        inputs += len(batch)
        pending += [_message(r, h, inputs) for r, h in _results_of(out)]
    assert len(handler.table) == 0, "every diamond completes"
    return cpu / inputs


def run_processor_wrapping(steps: int) -> float:
    """CPU seconds per step of what ``_run_traced`` adds around a step attempt."""
    from kflow.bus.message import TRACE_HEADER, trace_headers

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [(TRACE_HEADER, parent.encode())]
    started = time.process_time()
    for i in range(steps):
        if not tracing.on():
            continue
        value = dict(headers).get(TRACE_HEADER)
        traceparent = value.decode("ascii", "replace") if value else None
        span = tracing.tracer().start_span(
            "step a",
            context=tracing.context_of(traceparent),
            kind=tracing.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": "bench.tasks.default",
                "kflow.workflow_id": f"w{i}",
                "kflow.step_key": f"w{i}/a",
                "kflow.node_id": "a",
                "kflow.node_type": "noop",
                "kflow.attempt": 1,
                "kflow.idempotency_key": f"w{i}/a#1",
            },
        )
        with tracing.use_span(span, end_on_exit=True):
            trace_headers(traceparent=tracing.traceparent_of(span))
            span.set_attribute("kflow.replayed", False)
    return (time.process_time() - started) / steps


def _provider(sampled: bool) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON if sampled else ALWAYS_OFF))
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=100_000))
    return provider


def best(rounds: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = args.workflows * 5
    print(f"orchestrator, {args.workflows} diamonds ({records} inputs), best of {args.rounds}")
    off = best(args.rounds, lambda: run_orchestrator(args.workflows))
    print(f"  tracing off:            {off * 1e6:7.1f} µs CPU per input record")
    if tracing is None:
        print("  (no kflow.observability.tracing in this checkout)")
        return
    modes = {"on, all sampled": True, "on, none sampled": False}
    for label, sampled in modes.items():
        provider = _provider(sampled)
        tracing.enable(provider)
        try:
            on = best(args.rounds, lambda: run_orchestrator(args.workflows))
        finally:
            tracing.disable()
            provider.shutdown()
        print(f"  tracing {label + ':':<17} {on * 1e6:7.1f} µs (+{(on - off) * 1e6:.1f})")
    steps = records
    print(f"processor, the tracing work around {steps} step attempts, best of {args.rounds}")
    off = best(args.rounds, lambda: run_processor_wrapping(steps))
    print(f"  tracing off:            {off * 1e6:7.2f} µs CPU per step")
    for label, sampled in modes.items():
        provider = _provider(sampled)
        tracing.enable(provider)
        try:
            on = best(args.rounds, lambda: run_processor_wrapping(steps))
        finally:
            tracing.disable()
            provider.shutdown()
        print(f"  tracing {label + ':':<17} {on * 1e6:7.2f} µs per step")


if __name__ == "__main__":
    main()
