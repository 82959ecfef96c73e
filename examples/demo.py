"""The kflow demo (``kflow demo``, ``make demo`` or ``python -m kflow.examples.demo``).

Brings up an orchestrator and a docpipe processor as subprocesses, registers
the document-pipeline definition, starts a batch of workflows the way another
service would (a plain confluent-kafka Producer writing Avro StartWorkflow
records), approves each review step with a signal, shows progress and a
summary, prints one workflow's events, and stops what it started.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kflow.bus.admin import broker_reachable, create_topics
from kflow.bus.contracts import EnvelopeMeta, encode_input
from kflow.bus.topics import TopicSpec, topic_names
from kflow.cli.run import service_command, stop_children
from kflow.core.definition import load_definition
from kflow.core.events import (
    StepRetryScheduled,
    StepScheduled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRejected,
)
from kflow.core.inputs import SignalWorkflow, StartWorkflow
from kflow.core.jsondoc import Json
from kflow.orchestrator.client import EventReader, is_final
from kflow.registry.topic import publish_definition
from kflow.settings import get_settings
from kflow.stack import kflow_home

HERE = Path(__file__).resolve().parent
DEFINITION = HERE / "docpipe" / "docpipe.yaml"
LOG_DIR = kflow_home() / "demo-logs"
console = Console()


def envelope_bytes(command: StartWorkflow | SignalWorkflow, actor: str) -> bytes:
    """What any service publishes to ``{prefix}.commands``: an Avro envelope (single-object)."""
    event_id = uuid.uuid4().hex
    meta = EnvelopeMeta(
        event_id=event_id,
        occurred_at=time.time_ns() // 1_000_000,
        correlation_id=command.workflow_id,
        actor=actor,
        idempotency_key=event_id,
    )
    return encode_input(command, meta)


def start_services(env: dict[str, str], concurrency: int) -> list[subprocess.Popen[bytes]]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    commands = {
        "orchestrator": service_command("run", "orchestrator", "--log-level", "info"),
        "processor-docpipe": service_command(
            "run",
            "processor",
            "--queue",
            "docpipe",
            "--concurrency",
            str(concurrency),
            "--nodes",
            "kflow.examples.docpipe.nodes",
            "--log-level",
            "info",
        ),
    }
    children = []
    for name, command in commands.items():
        with (LOG_DIR / f"{name}.log").open("ab") as log:  # the child keeps its own fd
            children.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        console.print(f"  started {name} (pid {children[-1].pid}, log {LOG_DIR / name}.log)")
    return children


def main() -> int:
    parser = argparse.ArgumentParser(description="kflow document-pipeline demo")
    parser.add_argument("--workflows", type=int, default=50, help="workflows to start")
    parser.add_argument("--failure-rate", type=float, default=0.3, help="classifier flakiness")
    parser.add_argument("--concurrency", type=int, default=32, help="processor concurrency")
    args = parser.parse_args()

    settings = get_settings()
    names = topic_names(settings.topic_prefix)
    if not broker_reachable(settings.kafka_bootstrap, timeout_s=5):
        console.print(
            f"[red]Kafka is not reachable at {settings.kafka_bootstrap}[/]: "
            "start the stack with `make up` (or `kflow dev up`)"
        )
        return 1
    console.rule("kflow demo: document pipeline")
    definition = load_definition(DEFINITION)
    create_topics(
        settings.kafka_bootstrap, [TopicSpec(names.tasks("docpipe"), settings.partitions)]
    )
    key = publish_definition(settings.kafka_bootstrap, settings.topic_prefix, definition, "demo")
    console.print(
        f"1. registered definition [bold]{key}[/] ({len(definition.nodes)} nodes) "
        f"on {names.definitions}"
    )

    console.print("2. starting services")
    children = start_services({**os.environ}, args.concurrency)
    try:
        return run_batch(settings.kafka_bootstrap, settings.topic_prefix, args)
    finally:
        console.print("6. stopping the services the demo started")
        stop_children(children)


def run_batch(bootstrap: str, prefix: str, args: argparse.Namespace) -> int:
    names = topic_names(prefix)
    reader = EventReader(bootstrap, prefix, from_end=True)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    run_id = uuid.uuid4().hex[:6]
    ids = [f"doc-{run_id}-{i:03d}" for i in range(args.workflows)]
    console.print(
        f"3. publishing {len(ids)} StartWorkflow commands to {names.commands} "
        "with a plain confluent-kafka Producer"
    )
    started = time.monotonic()
    for i, workflow_id in enumerate(ids):
        command = StartWorkflow(
            workflow_id=workflow_id,
            name="docpipe",
            version=0,
            input=Json.of(
                {"doc_id": workflow_id, "sections": 3 + i % 5, "failure_rate": args.failure_rate}
            ),
        )
        producer.produce(names.commands, envelope_bytes(command, "billing-service"), workflow_id)
    producer.flush(30)

    completed = failed = retries = approvals = 0
    pending = set(ids)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("4. workflows finished", total=len(ids))
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for logged in reader.poll(0.1):
                event = logged.event
                if event.workflow_id not in pending:
                    continue
                if isinstance(event, StepRetryScheduled):
                    retries += 1
                elif isinstance(event, StepScheduled) and event.kind == "approval":
                    # The human reviewer, played by the demo: approve through a signal.
                    signal = SignalWorkflow(
                        workflow_id=event.workflow_id,
                        name=event.node_id,
                        payload=Json.of({"approved": True, "by": "demo-reviewer"}),
                    )
                    producer.produce(
                        names.commands, envelope_bytes(signal, "demo-reviewer"), event.workflow_id
                    )
                    producer.poll(0)
                    approvals += 1
                elif is_final(event):
                    pending.discard(event.workflow_id)
                    completed += isinstance(event, WorkflowCompleted)
                    failed += isinstance(event, WorkflowFailed | WorkflowRejected)
                    progress.advance(bar)
            producer.poll(0)
    producer.flush(10)
    elapsed = time.monotonic() - started
    reader.close()

    table = Table(title="5. summary")
    columns = ("started", "completed", "failed", "open", "retries", "approvals", "time", "wf/s")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        str(len(ids)),
        str(completed),
        str(failed),
        str(len(pending)),
        str(retries),
        str(approvals),
        f"{elapsed:.1f} s",
        f"{len(ids) / elapsed:.1f}",
    )
    console.print(table)
    example = ids[0]
    console.print(f"Look at one workflow's events with: [bold]kflow events {example}[/]")
    subprocess.run(service_command("events", example), check=False)
    if pending:
        console.print(f"[red]{len(pending)} workflows did not finish; see {LOG_DIR}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
