"""The kflow demo (``kflow demo``, ``make demo`` or ``python -m kflow.examples.demo``).

Brings up an orchestrator, a docpipe processor, both projectors and the API (with the
console) as subprocesses, registers the document-pipeline definition, starts a batch of
workflows the way another service would (``kflow.AsyncClient``: Avro StartWorkflow records
on the commands topic), approves each review step with a signal, shows progress and a
summary, one workflow's events and its read-model row, and where to open the console with
a fresh admin key; from a terminal it keeps the services running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kflow.api.apikeys import Scope, create_key
from kflow.bus.admin import broker_reachable, create_topics
from kflow.bus.credentials import key_file, save_key_file, signer_from_settings
from kflow.bus.principals import lookup_key, publish_key
from kflow.bus.topics import TopicSpec, topic_names
from kflow.cli.run import service_command, stop_children
from kflow.client import AsyncClient, AsyncWorkflowHandle, WaitTimeout
from kflow.core.definition import load_definition
from kflow.core.errors import KflowError
from kflow.core.events import (
    Event,
    StepRetryScheduled,
    StepScheduled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRejected,
)
from kflow.projections.db import connect
from kflow.projections.migrate import migrate
from kflow.registry.topic import publish_definition
from kflow.settings import Settings, get_settings
from kflow.stack import kflow_home

HERE = Path(__file__).resolve().parent
DEFINITION = HERE / "docpipe" / "docpipe.yaml"
LOG_DIR = kflow_home() / "demo-logs"
console = Console()


def start_services(
    env: dict[str, str], concurrency: int, settings: Settings
) -> list[subprocess.Popen[bytes]]:
    """The orchestrator, a docpipe processor, both projectors and the API (with the console)."""
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
        "projector-postgres": service_command("run", "projector", "--target", "postgres"),
        "projector-redis": service_command("run", "projector", "--target", "redis"),
        "api": service_command(
            "run", "api", "--host", settings.api_host, "--port", str(settings.api_port)
        ),
    }
    children = []
    for name, command in commands.items():
        with (LOG_DIR / f"{name}.log").open("ab") as log:  # the child keeps its own fd
            children.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        console.print(f"  started {name} (pid {children[-1].pid}, log {LOG_DIR / name}.log)")
    return children


def console_key(settings: Settings) -> str:
    """The read-model schema migrated, and a fresh admin API key for the console; its
    signing key is published, so the demo's own commands are signed with it (ADR 0060), and
    it is saved where the CLI and kflow.Client look for a key when none is configured."""
    with connect(settings.database_url, settings.db_schema) as conn:
        migrate(conn, settings.db_schema)
        key = create_key(conn, "demo", "default", [Scope.ADMIN])
    publish_key(settings.kafka_bootstrap, settings.topic_prefix, key.signing_record())
    save_for_cli(settings, key.token)
    return key.token


def save_for_cli(settings: Settings, token: str) -> None:
    """Write ``token`` to the key file (``KFLOW_API_KEY_FILE``, mode 0600) unless a key is
    configured already; say which key the CLI will sign with (ADR 0061)."""

    def say(text: str) -> None:
        console.print(text, soft_wrap=True)  # paths stay whole, to copy them

    if settings.api_key is not None:
        say("  KFLOW_API_KEY is set: the CLI and kflow.Client keep signing with it")
        return
    path = key_file(settings)
    if save_key_file(token, path):
        say(
            f"  saved the demo's admin key to {path} (mode 0600): `kflow start`, `cancel`, ... "
            "and kflow.Client sign their commands with it"
        )
        return
    try:
        signer = signer_from_settings(settings)
        known = signer is not None and lookup_key(
            settings.kafka_bootstrap, settings.topic_prefix, signer.key_id, timeout_s=10
        )
    except KflowError as e:
        say(f"  [yellow]{path} exists but cannot be used ({e})[/]: kept as it is")
        return
    if known:
        say(f"  {path} exists: kept as it is (not overwritten); the CLI signs with it")
    else:
        say(
            f"  [yellow]{path} exists (not overwritten) but holds a key this stack does not "
            "know[/]: commands signed with it are refused; move it away and run the demo "
            "again, or write a current key there (`kflow apikey create ... --save`)"
        )


def wait_for_api(base: str, timeout_s: float = 60.0) -> bool:
    """True once the API answers ``/readyz`` (PostgreSQL, Redis and Kafka reachable)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def show_read_model(base: str, token: str, workflow_id: str) -> None:
    """What the read-model API says about one workflow once its projection caught up."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 30
    while True:
        row = httpx.get(f"{base}/workflows/{workflow_id}", headers=headers, timeout=5)
        body = row.json() if row.status_code == 200 else {}
        if body.get("status") in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    steps = body.get("steps", [])
    console.print(
        f"Read model (GET {base}/workflows/{workflow_id}): status "
        f"[bold]{body.get('status', row.status_code)}[/], {len(steps)} steps"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="kflow document-pipeline demo")
    parser.add_argument("--workflows", type=int, default=50, help="workflows to start")
    parser.add_argument("--failure-rate", type=float, default=0.3, help="classifier flakiness")
    parser.add_argument("--concurrency", type=int, default=32, help="processor concurrency")
    parser.add_argument(
        "--stay",
        action=argparse.BooleanOptionalAction,
        default=sys.stdin.isatty(),
        help="keep the services (and the console) running until Ctrl-C "
        "[default: when run from a terminal]",
    )
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
    token = console_key(settings)
    # the orchestrator refuses unsigned commands (the default, ADR 0061)
    children = start_services(dict(os.environ), args.concurrency, settings)
    base = f"http://{settings.api_host}:{settings.api_port}"
    try:
        if not wait_for_api(base):
            console.print(f"[red]the API did not become ready; see {LOG_DIR / 'api.log'}[/]")
            return 1
        code, example = run_batch(settings.kafka_bootstrap, settings.topic_prefix, args, token)
        show_read_model(base, token, example)
        console.rule("the console")
        console.print(
            f"Open [bold]{base}/ui[/] and sign in with the API key\n  [bold]{token}[/]\n"
            f"(admin scope, tenant default; JSON API docs at {base}/docs)"
        )
        if args.stay and code == 0:
            console.print("The services keep running; press Ctrl-C to stop them.")
            with contextlib.suppress(KeyboardInterrupt):
                while all(child.poll() is None for child in children):
                    time.sleep(1)
        return code
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


def run_batch(bootstrap: str, prefix: str, args: argparse.Namespace, token: str) -> tuple[int, str]:
    """Run the batch, signed with the API key ``token``; the exit code and one workflow's id."""
    return asyncio.run(_run_batch(bootstrap, prefix, args, token))


async def _run_batch(
    bootstrap: str, prefix: str, args: argparse.Namespace, token: str
) -> tuple[int, str]:
    names = topic_names(prefix)
    settings = get_settings().model_copy(
        update={"kafka_bootstrap": bootstrap, "topic_prefix": prefix, "api_key": SecretStr(token)}
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
    subprocess.run(
        service_command("events", example), env={**os.environ, "KFLOW_API_KEY": token}, check=False
    )
    if open_:
        console.print(f"[red]{open_} workflows did not finish; see {LOG_DIR}[/]")
        return 1, example
    return 0, example


if __name__ == "__main__":
    sys.exit(main())
