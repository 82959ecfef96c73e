"""The kflow demo (``kflow demo``, ``make demo`` or ``python -m kflow.examples.demo``).

Brings up an orchestrator and a docpipe processor as subprocesses, registers
the document-pipeline definition, starts a batch of workflows the way another
service would (``kflow.AsyncClient``: Avro StartWorkflow records on the commands
topic), approves each review step with a signal, shows progress and a summary,
prints one workflow's events, and stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kflow.bus.admin import broker_reachable, create_topics
from kflow.bus.topics import TopicSpec, topic_names
from kflow.cli.run import service_command, stop_children
from kflow.client import AsyncClient, AsyncWorkflowHandle, WaitTimeout
from kflow.core.definition import load_definition
from kflow.core.events import (
    Event,
    StepRetryScheduled,
    StepScheduled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRejected,
)
from kflow.registry.topic import publish_definition
from kflow.settings import get_settings
from kflow.stack import kflow_home

HERE = Path(__file__).resolve().parent
DEFINITION = HERE / "docpipe" / "docpipe.yaml"
LOG_DIR = kflow_home() / "demo-logs"
console = Console()


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


@dataclass
class Tally:
    """What the demo counts while the batch runs."""

    completed: int = 0
    failed: int = 0
    retries: int = 0
    approvals: int = 0


def run_batch(bootstrap: str, prefix: str, args: argparse.Namespace) -> int:
    return asyncio.run(_run_batch(bootstrap, prefix, args))


async def _run_batch(bootstrap: str, prefix: str, args: argparse.Namespace) -> int:
    names = topic_names(prefix)
    settings = get_settings().model_copy(
        update={"kafka_bootstrap": bootstrap, "topic_prefix": prefix}
    )
    run_id = uuid.uuid4().hex[:6]
    ids = [f"doc-{run_id}-{i:03d}" for i in range(args.workflows)]
    console.print(
        f"3. publishing {len(ids)} StartWorkflow commands to {names.commands} "
        "with kflow.AsyncClient"
    )
    tally = Tally()
    started = time.monotonic()
    # The billing service starts the workflows; the human reviewer, played by the demo,
    # approves each review step through a signal with its own identity.
    async with (
        AsyncClient(settings, actor="billing-service") as client,
        AsyncClient(settings, actor="demo-reviewer") as reviewer,
    ):
        handles = await asyncio.gather(
            *(
                client.start(
                    "docpipe",
                    {"doc_id": wid, "sections": 3 + i % 5, "failure_rate": args.failure_rate},
                    id=wid,
                )
                for i, wid in enumerate(ids)
            )
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task("4. workflows finished", total=len(ids))

            async def drive(handle: AsyncWorkflowHandle) -> None:
                final: Event | None = None
                async for event in handle.events(timeout=300):
                    final = event
                    if isinstance(event, StepRetryScheduled):
                        tally.retries += 1
                    elif isinstance(event, StepScheduled) and event.kind == "approval":
                        payload = {"approved": True, "by": "demo-reviewer"}
                        await reviewer.get_handle(handle.workflow_id).signal(event.node_id, payload)
                        tally.approvals += 1
                tally.completed += isinstance(final, WorkflowCompleted)
                tally.failed += isinstance(final, WorkflowFailed | WorkflowRejected)
                progress.advance(bar)

            outcomes = await asyncio.gather(*(drive(h) for h in handles), return_exceptions=True)
    elapsed = time.monotonic() - started
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, WaitTimeout):
            raise outcome
    open_ = len(ids) - tally.completed - tally.failed

    table = Table(title="5. summary")
    columns = ("started", "completed", "failed", "open", "retries", "approvals", "time", "wf/s")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        str(len(ids)),
        str(tally.completed),
        str(tally.failed),
        str(open_),
        str(tally.retries),
        str(tally.approvals),
        f"{elapsed:.1f} s",
        f"{len(ids) / elapsed:.1f}",
    )
    console.print(table)
    example = ids[0]
    console.print(f"Look at one workflow's events with: [bold]kflow events {example}[/]")
    subprocess.run(service_command("events", example), check=False)
    if open_:
        console.print(f"[red]{open_} workflows did not finish; see {LOG_DIR}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
