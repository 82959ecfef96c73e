"""Runtime benchmark on the real stack: orchestrator + processor subprocesses on fresh topics.

Measures (prints figures, asserts nothing):
* diamond DAG of 4 no-op steps, N workflows with M in flight: workflows/s and
  start-to-end latency p50/p95/p99;
* one 1,000-step chain: total time (the per-step round trip);
* one 1,000-wide fan-out then join: total time.

Usage: .venv/bin/python bench/runtime_bench.py [--workflows 5000] [--in-flight 200]
[--breakdown] (median ms of each hop of a chain step, from record times and timestamps)
[--documents] (diamonds pass a ~1 KB document with nulls along every step)

After each scenario it prints the orchestrator's CPU per input record (commands and step
results) and the processor's per task, from /proc: steadier than wall time on a shared
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from json_bench import document  # bench/ is on sys.path when run as a script
from pydantic import SecretStr
from readside_bench import process_cpu_s

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.contracts import decode
from kflow.bus.principals import PrincipalKey, publish_key
from kflow.bus.reader import TopicReader, partition_for
from kflow.bus.signing import new_api_key
from kflow.bus.topics import topic_names, topic_specs
from kflow.cli.run import service_command, stop_children
from kflow.client import AsyncClient
from kflow.core.definition import parse_definition
from kflow.core.events import StepScheduled, StepSucceeded
from kflow.core.inputs import StepResult
from kflow.registry.topic import publish_definition
from kflow.settings import get_settings

PARTITIONS = 4
T = TypeVar("T")


def noop(node_id: str, depends_on: list[str] | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": "noop", "queue": "default", "depends_on": depends_on or []}


DIAMOND = {
    "name": "bench-diamond",
    "nodes": [noop("a"), noop("b", ["a"]), noop("c", ["a"]), noop("d", ["b", "c"])],
}
FANOUT = {
    "name": "bench-fanout",
    "nodes": [noop("root")]
    + [noop(f"w{i}", ["root"]) for i in range(1000)]
    + [noop("join", [f"w{i}" for i in range(1000)])],
}
DOC_DIAMOND = {
    "name": "bench-diamond-doc",
    "nodes": [
        {"id": "a", "type": "echo", "queue": "default", "input": {"doc": "$input"}},
        *(
            {"id": n, "type": "echo", "queue": "default", "depends_on": ["a"],
             "input": {"doc": "$steps.a.output.doc"}}
            for n in ("b", "c")
        ),
        {"id": "d", "type": "echo", "queue": "default", "depends_on": ["b", "c"],
         "input": {"doc": "$steps.b.output.doc"}},
    ],
}  # fmt: skip
"""The diamond with a ~1 KB document (with nulls) passed along every step (``--documents``)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    """Starts workflows and waits for them with one AsyncClient (one consumer, one producer)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.last_id = ""

    async def run_one(self, name: str) -> float:
        started = time.monotonic()
        handle = await self.client.start(name, id=f"{name}-{uuid.uuid4().hex[:8]}")
        self.last_id = handle.workflow_id
        await handle.result(timeout=600)  # raises unless it completed
        return time.monotonic() - started

    async def diamonds(
        self, total: int, in_flight: int, name: str = "bench-diamond", documents: bool = False
    ) -> tuple[float, list[float]]:
        latencies: list[float] = []
        ids = iter(range(total))

        async def worker() -> None:
            for n in ids:  # shared: each workflow is started by one worker
                sent = time.monotonic()
                wid = f"d-{n}-{uuid.uuid4().hex[:6]}"
                doc = document(n, nulls=True) if documents else None
                handle = await self.client.start(name, doc, id=wid)
                await handle.result()  # raises unless it completed
                latencies.append(time.monotonic() - sent)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.monotonic() - started, latencies


def _records(bootstrap: str, topic: str, partition: int) -> list[Any]:
    """Every committed record of one partition, decoded, with its Kafka timestamp."""
    with TopicReader(bootstrap, topic, partitions=[partition]) as reader:
        return [(decode(r.value), r.timestamp_ms) for r in reader.read_to_end() if r.value]


def chain_breakdown(bootstrap: str, prefix: str, workflow_id: str, partitions: int) -> str:
    """Median ms per chain step: decided -> task produced (in the orchestrator's transaction)
    -> result encoded by the processor (commit, fetch, ledger, node) -> result applied."""
    names = topic_names(prefix)
    partition = partition_for(workflow_id, partitions)
    scheduled: dict[str, int] = {}
    applied: dict[str, int] = {}
    for envelope, _ts in _records(bootstrap, names.events, partition):
        event = envelope.body
        if event.workflow_id == workflow_id and isinstance(event, StepScheduled):
            scheduled[event.step_key] = event.at
        elif event.workflow_id == workflow_id and isinstance(event, StepSucceeded):
            applied[event.step_key] = event.at
    tasks: dict[str, int] = {}
    for p in range(partitions):
        for envelope, ts in _records(bootstrap, names.tasks("default"), p):
            if envelope.workflow_id == workflow_id:
                tasks[envelope.body.step_key] = ts
    to_task = [tasks[key] - at for key, at in scheduled.items() if key in tasks]
    to_result: list[int] = []
    to_applied: list[int] = []
    for envelope, _ts in _records(bootstrap, names.results, partition):
        result = envelope.body
        if isinstance(result, StepResult) and result.step_key in scheduled:
            to_result.append(envelope.occurred_at - tasks[result.step_key])
            to_applied.append(applied[result.step_key] - envelope.occurred_at)
    return (
        f"  per step (median ms): scheduled -> task produced {statistics.median(to_task)}, "
        f"task produced -> result encoded {statistics.median(to_result)}, "
        f"result encoded -> applied {statistics.median(to_applied)}"
    )


async def measure(args: argparse.Namespace, env: dict[str, str], pids: tuple[int, int]) -> None:
    async def cpu_report(run: Awaitable[T], inputs: int, tasks: int) -> tuple[T, str]:
        before = process_cpu_s(pids[0]), process_cpu_s(pids[1])
        value = await run
        used = process_cpu_s(pids[0]) - before[0], process_cpu_s(pids[1]) - before[1]
        return value, (
            f"  CPU: orchestrator {used[0] / inputs * 1e6:.0f} us per input record, "
            f"processor {used[1] / tasks * 1e6:.0f} us per task"
        )

    settings = get_settings().model_copy(
        update={
            "topic_prefix": env["KFLOW_TOPIC_PREFIX"],
            "api_key": SecretStr(env["KFLOW_API_KEY"]),
        }
    )
    prefix = settings.topic_prefix
    async with AsyncClient(settings, actor="bench") as client:
        bench = Bench(client)
        await bench.run_one("bench-diamond")  # warm-up: group joins, topic metadata
        print(
            f"runtime bench on {settings.kafka_bootstrap}, prefix {prefix}, "
            f"{PARTITIONS} partitions, processor concurrency {args.concurrency}, "
            f"orchestrator max_batch_ms {args.max_batch_ms}"
        )
        if "chain" not in args.skip:
            took, cpu = await cpu_report(bench.run_one("bench-chain"), args.chain + 1, args.chain)
            print(f"chain of {args.chain} steps:          {took:7.2f} s (target < 10 s)")
            print(cpu)
            if args.breakdown:
                print(chain_breakdown(settings.kafka_bootstrap, prefix, bench.last_id, PARTITIONS))
        if "fanout" not in args.skip:
            print(
                f"fan-out 1000 wide + join:     {await bench.run_one('bench-fanout'):7.2f} s "
                "(target < 5 s)"
            )
        if "diamond" not in args.skip:
            name = "bench-diamond-doc" if args.documents else "bench-diamond"
            (elapsed, latencies), cpu = await cpu_report(
                bench.diamonds(args.workflows, args.in_flight, name, args.documents),
                args.workflows * 5,
                args.workflows * 4,
            )
            ms = [x * 1000 for x in latencies]
            print(
                f"diamond{' (1 KB documents)' if args.documents else ''} x{args.workflows} "
                f"at {args.in_flight} in flight: "
                f"{args.workflows / elapsed:7.1f} workflows/s (target >= 500), "
                f"latency p50 {percentile(ms, 0.5):.0f} ms, p95 {percentile(ms, 0.95):.0f} ms, "
                f"p99 {percentile(ms, 0.99):.0f} ms, mean {statistics.mean(ms):.0f} ms"
            )
            print(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip", action="append", default=[], help="diamond|chain|fanout")
    parser.add_argument("--chain", type=int, default=1000, help="chain length")
    parser.add_argument("--max-batch-ms", type=int, default=5, help="orchestrator batch window")
    parser.add_argument("--profile", help="directory for cProfile stats of both services")
    parser.add_argument(
        "--breakdown", action="store_true", help="split the chain's per-step time into its hops"
    )
    parser.add_argument(
        "--documents",
        action="store_true",
        help="diamonds pass a ~1 KB document (with nulls) along every step",
    )
    args = parser.parse_args()

    settings = get_settings()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    specs = topic_specs(prefix, PARTITIONS, ["default"])
    create_topics(settings.kafka_bootstrap, specs)
    # Commands must be signed (ADR 0061): a throwaway key, known only to this prefix.
    token = new_api_key()
    publish_key(
        settings.kafka_bootstrap,
        prefix,
        PrincipalKey.of_token(token, "bench", "default", {"admin"}),
    )
    env = {
        **os.environ,
        "KFLOW_TOPIC_PREFIX": prefix,
        "KFLOW_PARTITIONS": str(PARTITIONS),
        "KFLOW_API_KEY": token,
    }
    chain = {
        "name": "bench-chain",
        "nodes": [noop("s0")] + [noop(f"s{i}", [f"s{i - 1}"]) for i in range(1, args.chain)],
    }

    def profile(name: str) -> list[str]:
        return ["--profile", os.path.join(args.profile, f"{name}.pstats")] if args.profile else []

    for definition in (DIAMOND, DOC_DIAMOND, chain, FANOUT):
        publish_definition(settings.kafka_bootstrap, prefix, parse_definition(definition))
    children = [
        subprocess.Popen(
            service_command(
                "run",
                "orchestrator",
                "--max-batch-ms",
                str(args.max_batch_ms),
                *profile("orchestrator"),
            ),
            env=env,
        ),
        subprocess.Popen(
            service_command(
                "run",
                "processor",
                "--queue",
                "default",
                "--concurrency",
                str(args.concurrency),
                *profile("processor"),
            ),
            env=env,
        ),
    ]
    try:
        asyncio.run(measure(args, env, (children[0].pid, children[1].pid)))
    finally:
        stop_children(children)
        delete_topics(settings.kafka_bootstrap, [s.name for s in specs])


if __name__ == "__main__":
    main()
