"""Per-record CPU of each hop a step's JSON output passes through, in one process, no servers.

    .venv/bin/python bench/json_bench.py [--records 3000] [--repeat 3]

For a ~1 KB step output with and without ``null`` values it times, per record:

* processor: decode the task, run an inline node returning the output (input parsed for
  it), check the output, encode the StepResult;
* orchestrator: decode the StepResult, ``OrchestratorHandler.handle`` (decide, encode the
  StepSucceeded and the next StepScheduled and task, whose input embeds this output),
  ``end_batch`` (snapshots, batches of 100 workflows) and ``committed``;
* projector: decode each event (the orchestrator's output above), fold it into the steps
  row and build the COPY rows of ``events`` and ``steps``.

It only uses entry points that exist before and after ADR 0026, so the same file measures
both. Prints the best of ``--repeat`` runs (µs per record). Where ``kflow.core.jsondoc``
exists it also times the JSON work alone that each hop does per record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kflow.bus.contracts import Envelope, EnvelopeMeta, decode, default_contracts, encode_task
from kflow.bus.message import BusMessage
from kflow.bus.records import ExecuteStep
from kflow.bus.topics import topic_names
from kflow.core.definition import parse_definition
from kflow.core.events import Event, StepEvent, StepScheduled
from kflow.core.inputs import StartWorkflow, StepResult
from kflow.core.views import StepView, apply_step_event
from kflow.orchestrator.handler import OrchestratorHandler
from kflow.orchestrator.identity import Authenticator, NoKeys
from kflow.processor.executor import StepExecutor
from kflow.processor.registry import NodeRegistry
from kflow.processor.wire import decode_task, encode_result
from kflow.projections import fold
from kflow.projections.log_event import LogEvent

WORKFLOWS = 100
"""Workflows advanced per orchestrator batch (one result each)."""


def document(seed: int, nulls: bool) -> dict[str, Any]:
    """About 1 KB shaped like a step output; with ``nulls``, one ``null`` per row."""
    rng = random.Random(seed)
    rows = [
        {
            "sku": f"SKU-{rng.randrange(100_000):05d}",
            "qty": rng.randrange(1, 9),
            "price": round(rng.uniform(1, 500), 2),
            "ok": rng.random() < 0.5,
            **({"note": None} if nulls else {"note": "n"}),
        }
        for _ in range(14)
    ]
    return {
        "order": f"order-{seed}",
        "customer": {"id": uuid.UUID(int=rng.getrandbits(128)).hex, "tier": "gold"},
        "rows": rows,
    }


def _best(run: Callable[[], float], repeat: int) -> float:
    return min(run() for _ in range(repeat))


def bench_processor(outputs: list[dict[str, Any]], repeat: int) -> float:
    """µs per task: decode, node (inline, returns the output), check, encode the result."""
    nodes = NodeRegistry()
    by_key = {f"w/n{i}#1": out for i, out in enumerate(outputs)}
    nodes.node("emit", inline=True)(lambda value: by_key[value["key"]])
    executor = StepExecutor(nodes, None, ThreadPoolExecutor(1), lambda task, details: None)  # type: ignore[arg-type]
    tasks = []
    for i in range(len(outputs)):
        key = f"w/n{i}#1"
        task = ExecuteStep(
            workflow_id="w", step_key=f"w/n{i}", node_id=f"n{i}", node_type="emit",
            queue="default", attempt=1, input={"key": key, "prev": outputs[i - 1]},
            idempotency_key=key, scheduled_at=1,
        )  # fmt: skip
        tasks.append(encode_task(task, EnvelopeMeta(event_id=key)))

    async def run() -> float:
        started = time.process_time()
        for data in tasks:
            task = decode_task(data)
            outcome = await executor._run(task)
            assert outcome.ok, outcome
            encode_result(
                StepResult(
                    workflow_id=task.workflow_id, step_key=task.step_key,
                    attempt=task.attempt, output=outcome.output,
                )
            )  # fmt: skip
        return (time.process_time() - started) / len(tasks) * 1e6

    return _best(lambda: asyncio.run(run()), repeat)


def _envelope(body: Any, event_id: str) -> Envelope:
    return Envelope(event_id, type(body).__name__, body.workflow_id, None, 1, None, None,
                    None, None, None, 1, body)  # fmt: skip


def bench_orchestrator(
    outputs: list[dict[str, Any]], repeat: int
) -> tuple[float, list[tuple[str, bytes]]]:
    """µs per result record; also returns the events written (topic, bytes)."""
    steps = len(outputs) // WORKFLOWS + 1
    nodes = [{"id": "s0", "type": "emit"}] + [
        {"id": f"s{i}", "type": "emit", "depends_on": [f"s{i - 1}"],
         "input": {"prev": f"$steps.s{i - 1}.output"}}
        for i in range(1, steps)
    ]  # fmt: skip
    definition = parse_definition({"name": "chain", "nodes": nodes})
    names = topic_names("b")
    contracts = default_contracts()
    results: list[list[bytes]] = []  # per batch: one StepResult per workflow
    for step in range(steps - 1):
        batch = []
        for w in range(WORKFLOWS):
            result = StepResult(
                workflow_id=f"wf{w}", step_key=f"wf{w}/s{step}", attempt=1,
                output=outputs[step * WORKFLOWS + w],
            )  # fmt: skip
            meta = EnvelopeMeta(event_id=f"r{step}-{w}", occurred_at=1)
            batch.append(contracts.encode_body(result, meta))
        results.append(batch)
    written: list[tuple[str, bytes]] = []

    def run() -> float:
        # unsigned commands accepted: this measures the decisions, not verification (ADR 0060)
        handler = OrchestratorHandler(names, lambda name, version: definition,
                                      lambda parts: {}, lambda: 1_000,
                                      authenticator=Authenticator(NoKeys(), False))  # fmt: skip
        for w in range(WORKFLOWS):
            start = StartWorkflow(workflow_id=f"wf{w}", name="chain", version=0)
            handler.handle(BusMessage(names.commands, 0, w, start.workflow_id, b"",
                                      _envelope(start, f"start{w}")))  # fmt: skip
        handler.end_batch()
        handler.committed()
        written.clear()
        count = 0
        started = time.process_time()
        for batch in results:
            for offset, data in enumerate(batch):
                envelope = decode(data)
                message = BusMessage(names.results, 0, offset, envelope.workflow_id, data, envelope)
                out = handler.handle(message)
                written.extend((r.topic, r.value) for r in out if r.value is not None)
                count += 1
            handler.end_batch()
            handler.committed()
        return (time.process_time() - started) / count * 1e6

    return _best(run, repeat), written


def bench_projector(events: list[bytes], repeat: int) -> float:
    """µs per event: decode, fold into the step row, build the events and steps COPY rows."""
    contracts = default_contracts()

    def run() -> float:
        views: dict[str, StepView] = {}
        started = time.process_time()
        for offset, data in enumerate(events):
            envelope = contracts.decode_envelope(data)
            event = envelope.body
            assert isinstance(event, Event)
            le = LogEvent("b.events", 0, offset, event, envelope.event_id, "t", None, 1)
            fold.event_row(le)
            if isinstance(event, StepEvent):
                view = views[event.step_key] = apply_step_event(views.get(event.step_key), event)
                fold.step_row(view)
        return (time.process_time() - started) / len(events) * 1e6

    return _best(run, repeat)


def bench_json_work(output: dict[str, Any], count: int = 20_000) -> str | None:
    """µs of the JSON work alone per record and hop (ADR 0026 code only)."""
    try:
        from kflow.core.jsondoc import Json
    except ImportError:
        return None
    text = Json.of(output).text

    def timed(work: Callable[[], object]) -> float:
        started = time.process_time()
        for _ in range(count):
            work()
        return (time.process_time() - started) / count * 1e6

    def orchestrator_work() -> int:
        result = Json.from_text(text)  # as decoded: not parsed yet
        result.measure()  # the one parse: the check that keeps non-JSON out of the log
        return Json.compose({"prev": result}).measure()  # the next step's input embeds it

    processor = timed(lambda: Json.of(output).measure())  # check + the one serialisation
    orchestrator = timed(orchestrator_work)
    projector = timed(lambda: Json.from_text(text).text.encode())  # row bytes
    return (
        f"JSON work alone: processor {processor:5.2f} us, orchestrator {orchestrator:5.2f} us "
        f"(parse once to check, embed in the next input), projector {projector:5.2f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for nulls in (False, True):
        outputs = [document(i, nulls) for i in range(args.records)]
        size = len(json.dumps(outputs[0], separators=(",", ":")))
        label = "with nulls   " if nulls else "without nulls"
        processor = bench_processor(outputs, args.repeat)
        orchestrator, written = bench_orchestrator(outputs, args.repeat)
        events = [data for topic, data in written if topic.endswith(".events")]
        projector = bench_projector(events, args.repeat)
        scheduled = sum(isinstance(decode(d).body, StepScheduled) for d in events[:50])
        print(
            f"{label} ({size} B output): processor {processor:6.1f} us/task, "
            f"orchestrator {orchestrator:6.1f} us/result, projector {projector:6.1f} us/event "
            f"({len(events)} events, {scheduled}/50 StepScheduled)"
        )
        work = bench_json_work(outputs[0])
        if work is not None:
            print(f"  {work}")


if __name__ == "__main__":
    main()
