"""``kflow start|signal|pause|resume|cancel|events``: drive and inspect one workflow.

Commands wait (``--timeout``, bounded) for the orchestrator's answer and print success only
when it applied the command. Exit codes: 0 applied, 1 rejected (the reason is printed) or
another error, 2 bad usage, 3 no answer in time (the command is delivered and applies once an
orchestrator reads it). ``--no-wait`` returns once Kafka has the command.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kflow.bus.credentials import command_signer, signer_from_settings
from kflow.bus.principals import lookup_key
from kflow.bus.topics import topic_names
from kflow.cli.broker import require_broker
from kflow.client import Client, CommandRejected, WaitTimeout, WorkflowHandle
from kflow.core.access import tenant_of
from kflow.core.errors import KflowError
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    InputRejected,
    StepEvent,
    WorkflowCompleted,
    WorkflowRejected,
    WorkflowStarted,
    event_to_dict,
)
from kflow.core.jsondoc import dumps
from kflow.settings import get_settings

_SKIP_FIELDS = {"type", "workflow_id", "seq", "at", "step_key", "attempt", "cause", "definition"}
T = TypeVar("T")
ANSWER_TIMEOUT_S = 10.0
EXIT_NO_ANSWER = 3


def _json(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        typer.echo(
            f"error: {option} is not valid JSON ({e.msg} at column {e.colno}): {text}", err=True
        )
        raise typer.Exit(2) from e


@contextmanager
def _client(actor: str | None, sending: str | None = None) -> Iterator[Client]:
    """A Client on the configured broker; any kflow error becomes one line and exit 1.

    ``sending`` names the command about to be sent: without the API key it must be signed
    with, that is the one line (before Kafka is asked anything, ADR 0061)."""
    if sending is not None:
        try:
            command_signer(get_settings(), f"kflow {sending}")
        except KflowError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from e
    settings = require_broker()
    try:
        with Client(settings, actor=actor) as client:
            yield client
    except KflowError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def _send(workflow_id: str, actor: str | None, send: Callable[[WorkflowHandle], T]) -> T:
    with _client(actor) as client:
        return send(client.get_handle(workflow_id))


def _answer(what: str, timeout: float, wait: Callable[[], T]) -> T:
    """``wait()`` for the orchestrator's answer with a spinner; no answer exits 3, a
    rejection exits 1 with its reason."""
    try:
        with Console(stderr=True).status(f"waiting for the orchestrator's answer to {what}"):
            return wait()
    except WaitTimeout as e:
        typer.echo(
            f"error: no answer from the orchestrator within {timeout:g} s to {what}; it is "
            "delivered and applies once an orchestrator reads it (is `kflow run orchestrator` "
            "running?)",
            err=True,
        )
        raise typer.Exit(EXIT_NO_ANSWER) from e
    except CommandRejected as e:
        typer.echo(f"error: {what} rejected ({e.code}): {e.reason}", err=True)
        raise typer.Exit(1) from e


def _command(
    workflow_id: str,
    actor: str | None,
    what: str,
    done: str,
    send: Callable[[WorkflowHandle, float | None], Event | None],
    no_wait: bool,
    timeout: float,
) -> None:
    """Send one command to ``workflow_id``; print the line ``done`` only once it was applied."""
    with _client(actor, what) as client:
        handle = client.get_handle(workflow_id)
        if no_wait:
            send(handle, None)
            typer.echo(f"{what} sent for {workflow_id} (not waiting for the answer)")
            return
        answer = _answer(f"{what} of {workflow_id}", timeout, lambda: send(handle, timeout))
    if isinstance(answer, InputRejected):  # duplicate_command: applied before, not again
        typer.echo(f"{done} (earlier: {answer.reason}; not applied again)")
        return
    typer.echo(done)


ActorOption = Annotated[str | None, typer.Option(help="who asks (recorded in the envelope)")]
NoWaitOption = Annotated[
    bool,
    typer.Option("--no-wait", help="return once Kafka has the command; do not wait for the answer"),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="a key of this command: a retry with the same key is applied once (ADR 0018)",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", min=0.1, help="seconds to wait for the orchestrator's answer (exit 3 after)"
    ),
]


def start(
    name: Annotated[str, typer.Argument(help="workflow definition name")],
    input: Annotated[str | None, typer.Option("--input", help="workflow input as JSON")] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="workflow id [default: UUID]")
    ] = None,
    version: Annotated[int, typer.Option(min=0, help="definition version; 0 = latest")] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="follow progress until it ends")] = False,
    no_wait: NoWaitOption = False,
    key: KeyOption = None,
    timeout: TimeoutOption = ANSWER_TIMEOUT_S,
    actor: ActorOption = "cli",
) -> None:
    """Start a workflow (publishes StartWorkflow to the commands topic) and report whether
    the orchestrator started it.

    Example: kflow start docpipe --input '{"doc_id": "d-1"}' --id doc-1 --wait
    """
    if wait and no_wait:
        typer.echo(
            "error: --wait follows the workflow, --no-wait does not wait: pick one", err=True
        )
        raise typer.Exit(2)
    value = _json(input, "--input")
    with _client(actor, "start") as client:
        handle = client.start(
            name, value, id=workflow_id, version=version, idempotency_key=key
        )  # without --id, the key gives the id: a retried start does not start twice
        wid = handle.workflow_id
        if no_wait:
            typer.echo(f"start sent for {wid} (not waiting for the answer)")
            return
        answer = _answer(f"start of {wid}", timeout, lambda: handle.answer(timeout))
        if isinstance(answer, WorkflowRejected):
            typer.echo(f"error: {wid} was not started ({answer.code}): {answer.reason}", err=True)
            if not wait:
                raise typer.Exit(1)
        elif isinstance(answer, DuplicateStartIgnored):
            typer.echo(f"{wid} already exists: not started again (duplicate start ignored)")
        else:
            typer.echo(f"started {wid}")
        if wait:
            code = _follow(handle)
            raise typer.Exit(code)


def _follow(handle: WorkflowHandle) -> int:
    """Show step progress live until the workflow ends; exit code 0 only when it completed."""
    workflow_id = handle.workflow_id
    steps: dict[str, str] = {}
    last: Event | None = None

    def render() -> Table:
        table = Table(title=f"workflow {workflow_id}: {type(last).__name__ if last else 'waiting'}")
        table.add_column("step")
        table.add_column("status")
        for key, status in steps.items():
            table.add_row(key.removeprefix(workflow_id + "/"), status)
        return table

    with Live(render(), console=Console(stderr=True), refresh_per_second=8) as live:
        for event in handle.events():
            last = event
            if isinstance(event, StepEvent):
                steps[event.step_key] = type(event).__name__.removeprefix("Step")
            live.update(render())
    assert last is not None  # events() ends with the final event
    summary = {k: v for k, v in event_to_dict(last).items() if k not in _SKIP_FIELDS}
    typer.echo(f"{type(last).__name__} {dumps(summary)}")
    return 0 if isinstance(last, WorkflowCompleted) else 1


def signal(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    name: Annotated[str, typer.Argument(help="waiting step's node id (map child: node[i])")],
    payload: Annotated[
        str, typer.Option(help='JSON payload, e.g. {"approved": true}')
    ] = '{"approved": true}',
    no_wait: NoWaitOption = False,
    key: KeyOption = None,
    timeout: TimeoutOption = ANSWER_TIMEOUT_S,
    actor: ActorOption = "cli",
) -> None:
    """Send a signal to a waiting step (approval, or a step awaiting review).

    Example: kflow signal doc-1 review --payload '{"approved": true}'
    """
    value = _json(payload, "--payload")
    _command(
        workflow_id,
        actor,
        f"signal {name}",
        f"signalled {workflow_id}/{name}",
        lambda handle, wait: handle.signal(name, value, wait=wait, idempotency_key=key),
        no_wait,
        timeout,
    )


def pause(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    no_wait: NoWaitOption = False,
    key: KeyOption = None,
    timeout: TimeoutOption = ANSWER_TIMEOUT_S,
    actor: ActorOption = "cli",
) -> None:
    """Pause a workflow: no new steps are scheduled until it is resumed.

    Example: kflow pause doc-1 --reason "waiting for the vendor"
    """
    _command(
        workflow_id,
        actor,
        "pause",
        f"paused {workflow_id}",
        lambda handle, wait: handle.pause(reason, wait=wait, idempotency_key=key),
        no_wait,
        timeout,
    )


def resume(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    no_wait: NoWaitOption = False,
    key: KeyOption = None,
    timeout: TimeoutOption = ANSWER_TIMEOUT_S,
    actor: ActorOption = "cli",
) -> None:
    """Resume a paused workflow.

    Example: kflow resume doc-1
    """
    _command(
        workflow_id,
        actor,
        "resume",
        f"resumed {workflow_id}",
        lambda handle, wait: handle.resume(wait=wait, idempotency_key=key),
        no_wait,
        timeout,
    )


def cancel(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    no_wait: NoWaitOption = False,
    key: KeyOption = None,
    timeout: TimeoutOption = ANSWER_TIMEOUT_S,
    actor: ActorOption = "cli",
) -> None:
    """Cancel a workflow; running steps are marked cancelled.

    Example: kflow cancel doc-1 --reason "duplicate upload"
    """
    _command(
        workflow_id,
        actor,
        "cancel",
        f"cancelled {workflow_id}",
        lambda handle, wait: handle.cancel(reason, wait=wait, idempotency_key=key),
        no_wait,
        timeout,
    )


def events(
    workflow_id: Annotated[str, typer.Argument(help="workflow id")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="print events as they happen, until it ends")
    ] = False,
) -> None:
    """Print one workflow's events from the event log.

    Example: kflow events doc-1
    """
    settings = get_settings()
    topic = topic_names(settings.topic_prefix).events
    tenant = own_tenant()
    if tenant is not None:  # signed in: only this tenant's workflows are shown
        history = _send(workflow_id, None, lambda handle: list(handle.events(follow=False)))
        if not belongs_to(history, tenant):
            typer.echo(
                f"error: no events for workflow {workflow_id!r} of tenant {tenant!r} in {topic}",
                err=True,
            )
            raise typer.Exit(1)
    if follow:
        found = _send(workflow_id, None, lambda handle: _print_live(handle, as_json))
    else:
        found = _send(workflow_id, None, lambda handle: list(handle.events(follow=False)))
    if not found:
        typer.echo(f"error: no events for workflow {workflow_id!r} in {topic}", err=True)
        raise typer.Exit(1)
    if follow:
        return
    if as_json:
        for event in found:
            typer.echo(dumps(event_to_dict(event)))
        return
    table = Table(title=f"events of {workflow_id}")
    for column in ("seq", "type", "step", "attempt", "details"):
        table.add_column(column, overflow="fold")
    for event in found:
        step, attempt, text = _columns(event)
        table.add_row(str(event.seq), type(event).__name__, step, attempt, text)
    Console(width=180).print(table)


def own_tenant() -> str | None:
    """The tenant of the configured API key (None: no key configured).

    A courtesy for people sharing one CLI machine: a process that can read the events
    topic can read every tenant's events; Kafka ACLs are what enforce it (docs/security.md).
    """
    settings = get_settings()
    try:
        signer = signer_from_settings(settings)
        if signer is None:
            return None
        key = lookup_key(settings.kafka_bootstrap, settings.topic_prefix, signer.key_id)
    except KflowError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    if key is None or not hmac.compare_digest(key.signing_key, signer.key):
        typer.echo(
            f"error: API key {signer.key_id} is unknown or revoked; create one with "
            "kflow apikey create",
            err=True,
        )
        raise typer.Exit(1)
    return key.tenant


def belongs_to(history: Sequence[Event], tenant: str) -> bool:
    started = next((e for e in history if isinstance(e, WorkflowStarted)), None)
    return started is not None and tenant_of(started.tenant) == tenant


def _columns(event: Event) -> tuple[str, str, str]:
    """The step (without the workflow id), attempt and details of one event's row."""
    data = event_to_dict(event)
    step = data.get("step_key", "")
    details = dumps({k: v for k, v in data.items() if k not in _SKIP_FIELDS})
    return (
        step.removeprefix(event.workflow_id + "/") if step else "",
        str(data.get("attempt", "")),
        details if len(details) < 120 else details[:117] + "...",
    )


def _print_live(handle: WorkflowHandle, as_json: bool) -> list[Event]:
    """Print each event as it happens (one line each) until the final one."""
    found: list[Event] = []
    for event in handle.events():
        found.append(event)
        if as_json:
            typer.echo(dumps(event_to_dict(event)))
        else:
            step, attempt, text = _columns(event)
            typer.echo(f"{event.seq:>4} {type(event).__name__:<24} {step} {attempt} {text}")
    return found


def register(app: typer.Typer) -> None:
    """Add the workflow commands at the top level."""
    for command in (start, signal, pause, resume, cancel, events):
        app.command(command.__name__)(command)
