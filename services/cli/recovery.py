"""``kflow retry``, ``kflow bulk`` and ``kflow dlq``: steer failed work back (ADRs 0082-0084).

``retry ID`` follows the answer with ``kflow.Client``; ``retry --filter`` and ``bulk`` make a
batch in the read model (PostgreSQL) and publish one command per workflow, like the API's
``POST /batches`` (the same batch id for the same request); ``dlq`` reads the DLQ topic and
redrives or discards letters at most once.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from kflow.bus.signing import Signer
from kflow.cli.broker import require_broker
from kflow.core.errors import KflowError
from kflow.settings import Settings

ActorOption = Annotated[str, typer.Option(help="who asks (recorded in the envelope)")]
TenantOption = Annotated[str, typer.Option(help="the tenant whose workflows are selected")]
FilterOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="select by the list filters: status=failed, name=order, q=part-of-id,"
        " created_after=2026-01-01T00:00, created_before=... (repeat to combine)",
    ),
]
FILTER_KEYS = ("status", "name", "q", "created_after", "created_before")
WAIT_S = 30.0


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _filters(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in FILTER_KEYS or not value:
            raise _fail(
                f"--filter {pair!r}: give key=value with key one of {', '.join(FILTER_KEYS)}", 2
            )
        out[key] = value
    return out


# -- retry ---------------------------------------------------------------------------------


def retry(
    workflow_id: Annotated[str | None, typer.Argument(help="the failed or cancelled run")] = None,
    filters: FilterOption = None,
    reason: Annotated[str, typer.Option(help="why (recorded in WorkflowRetried)")] = "",
    wait: Annotated[bool, typer.Option("--wait", help="follow the run until it ends")] = False,
    tenant: TenantOption = "default",
    actor: ActorOption = "cli",
) -> None:
    """Retry a failed or cancelled run from the steps that did not finish (completed steps
    keep their results), or every run matching --filter as one batch.

    Examples: kflow retry order-17 --reason "fixed the card processor";
    kflow retry --filter status=failed --filter name=order
    """
    if (workflow_id is None) == (not filters):
        raise _fail("give a workflow id, or --filter to retry a batch (not both)", 2)
    if filters:
        f = _filters(filters)
        if f.get("status") not in (None, "failed", "cancelled"):
            raise _fail("--filter status: only failed or cancelled runs can be retried", 2)
        _run_batch("retry", (), {"status": "failed", **f}, reason, "", None, None, tenant, actor)
        return
    assert workflow_id is not None
    _retry_one(workflow_id, reason, wait, actor)


def _retry_one(workflow_id: str, reason: str, wait: bool, actor: str) -> None:
    from kflow.cli.workflows import _client, _follow
    from kflow.core.events import InputRejected, StepReopened, WorkflowRetried

    with _client(actor, "retry") as client:
        handle = client.get_handle(workflow_id).retry(reason)
        retried: WorkflowRetried | None = None
        reopened: list[str] = []
        for event in handle.events(timeout=WAIT_S):
            if isinstance(event, InputRejected):
                raise _fail(f"retry of {workflow_id} refused ({event.code}): {event.reason}")
            if isinstance(event, WorkflowRetried):
                retried = event
            elif isinstance(event, StepReopened):
                reopened.append(f"{event.step_key.removeprefix(workflow_id + '/')}#{event.attempt}")
            elif retried is not None:
                break  # the steps were reopened: what follows is the run going on
        if retried is None:
            raise _fail(f"no answer to the retry of {workflow_id} within {WAIT_S:.0f} s")
        typer.echo(f"retried {workflow_id} (was {retried.previous_status}): {', '.join(reopened)}")
        if wait:
            raise typer.Exit(_follow(handle))


# -- bulk ----------------------------------------------------------------------------------


def bulk(
    action: Annotated[str, typer.Argument(help="cancel, pause, resume, signal or retry")],
    ids: Annotated[list[str] | None, typer.Option("--id", help="a workflow id (repeat)")] = None,
    filters: FilterOption = None,
    reason: Annotated[str, typer.Option(help="why (cancel, pause, retry)")] = "",
    signal_name: Annotated[str, typer.Option(help="the waiting step (signal)")] = "",
    payload: Annotated[str, typer.Option(help="signal payload as JSON")] = '{"approved": true}',
    key: Annotated[str | None, typer.Option(help="idempotency key of the batch")] = None,
    tenant: TenantOption = "default",
    actor: ActorOption = "cli",
) -> None:
    """One action on many workflows as a batch: its id, progress and each outcome. Running
    the same command again finds the same batch and publishes nothing twice.

    Example: kflow bulk cancel --filter status=running --filter name=nightly --reason cleanup
    """
    if not ids and not filters:
        raise _fail("select workflows with --id (repeat) or --filter", 2)
    try:
        value = json.loads(payload) if action == "signal" else None
    except json.JSONDecodeError as e:
        raise _fail(f"--payload is not JSON ({e.msg})", 2) from e
    f = _filters(filters or [])
    _run_batch(action, tuple(ids or ()), f, reason, signal_name, value, key, tenant, actor)


def _run_batch(
    action: str,
    ids: tuple[str, ...],
    f: dict[str, str],
    reason: str,
    signal_name: str,
    payload: Any,
    key: str | None,
    tenant: str,
    actor: str,
) -> None:
    from kflow.api import batches
    from kflow.bus.credentials import command_signer
    from kflow.settings import get_settings

    try:  # before anything is selected or sent: without a key, one line with the fix
        signer = command_signer(get_settings(), f"kflow {'retry' if action == 'retry' else 'bulk'}")
    except KflowError as e:
        raise _fail(str(e)) from e
    settings = require_broker()
    selection = batches.Selection(
        ids, f.get("status"), f.get("name"), f.get("q"),
        f.get("created_after"), f.get("created_before"),
    )  # fmt: skip
    request = batches.BatchRequest(action, selection, reason, signal_name, payload, key)
    try:
        view = asyncio.run(_submit_and_wait(settings, request, tenant, actor, signer))
    except (KflowError, psycopg.Error) as e:
        raise _fail(str(e)) from e
    table = Table(title=f"batch {view.batch_id}: {view.action} on {view.total} workflow(s)")
    for column in ("workflow", "outcome", "event", "detail"):
        table.add_column(column, overflow="fold")
    for item in view.items:
        event = f"{item.event} seq {item.seq}" if item.event else ""
        table.add_row(item.workflow_id, item.state, event, item.detail)
    Console(width=160).print(table)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(view.counts.items())) or "nothing selected"
    typer.echo(f"batch {view.batch_id}: {counts}")
    if not view.done or view.counts.get("refused") or view.counts.get("not_found"):
        raise typer.Exit(1)


async def _submit_and_wait(
    settings: Settings, request: Any, tenant: str, actor: str, signer: Signer | None
) -> Any:
    from kflow.api import batches
    from kflow.bus.commands import CommandPublisher
    from kflow.projections.db import search_path_option

    publisher = CommandPublisher(
        settings.kafka_bootstrap, settings.topic_prefix, timeout_s=30, component="cli",
        signer=signer,
    )  # fmt: skip
    try:
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, connect_timeout=10,
            options=search_path_option(settings.db_schema),
        ) as conn:  # fmt: skip
            batch_id = await batches.submit(conn, publisher, tenant, actor, request)
            deadline = time.monotonic() + WAIT_S
            while True:
                view = await batches.read_batch(conn, batch_id, tenant)
                assert view is not None
                if view.done or time.monotonic() > deadline:
                    return view
                await asyncio.sleep(0.3)
    finally:
        publisher.close()


# -- dlq -----------------------------------------------------------------------------------

dlq_app = typer.Typer(help="Dead letters: list, show, redrive or discard (each at most once).")


@dlq_app.command("list")
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="one object per line")] = False,
) -> None:
    """Every dead letter, newest first, with what was done to it.

    Example: kflow dlq list
    """
    from kflow.api.console.kafka_views import dead_letters
    from kflow.bus.redrive import letter_id, read_markers
    from kflow.bus.topics import topic_names

    s = require_broker()
    try:
        letters = dead_letters(s.kafka_bootstrap, topic_names(s.topic_prefix).dlq, shown=10_000)
        markers = read_markers(s.kafka_bootstrap, s.topic_prefix)
    except KflowError as e:
        raise _fail(str(e)) from e
    table = Table(title=f"{topic_names(s.topic_prefix).dlq}: {len(letters)} letter(s)")
    for column in ("id", "source", "key", "reason", "error", "done"):
        table.add_column(column, overflow="fold")
    for x in letters:
        lid = letter_id(x.dlq_partition, x.dlq_offset)
        m = markers.get(lid)
        done = f"{m.action} by {m.actor}" if m else ""
        if as_json:
            doc = {
                "id": lid, "source_topic": x.source_topic,
                "source_partition": x.source_partition, "source_offset": x.source_offset,
                "key": x.key, "reason": x.reason, "error_type": x.error_type,
                "message": x.message, "action": m.action if m else None,
            }  # fmt: skip
            typer.echo(json.dumps(doc))
            continue
        source = f"{x.source_topic}[{x.source_partition}]@{x.source_offset}"
        table.add_row(lid, source, x.key or "", x.reason, f"{x.error_type}: {x.message}", done)
    if not as_json:
        Console(width=180).print(table)


@dlq_app.command("show")
def dlq_show(letter: Annotated[str, typer.Argument(help="partition:offset in the DLQ")]) -> None:
    """One dead letter with its record decoded when it decodes.

    Example: kflow dlq show 0:17
    """
    from kflow.api.console.kafka_views import dead_letters
    from kflow.bus.redrive import DeadLetterActionError, letter_id, parse_letter_id, read_markers
    from kflow.bus.topics import topic_names

    s = require_broker()
    try:
        wanted = parse_letter_id(letter)
    except DeadLetterActionError as e:
        raise _fail(str(e), 2) from e
    letters = dead_letters(s.kafka_bootstrap, topic_names(s.topic_prefix).dlq, shown=100_000)
    found = next((x for x in letters if (x.dlq_partition, x.dlq_offset) == wanted), None)
    if found is None:
        raise _fail(f"no dead letter {letter} in {topic_names(s.topic_prefix).dlq}")
    m = read_markers(s.kafka_bootstrap, s.topic_prefix).get(letter_id(*wanted))
    doc = {
        "id": letter, "source_topic": found.source_topic,
        "source_partition": found.source_partition, "source_offset": found.source_offset,
        "key": found.key, "reason": found.reason, "error_type": found.error_type,
        "message": found.message, "at": found.at, "size": found.size, "decoded": found.decoded,
        "action": None if m is None else {"action": m.action, "by": m.actor,
                                          "reason": m.reason, "at": m.at},
    }  # fmt: skip
    typer.echo(json.dumps(doc, indent=2, default=str))


def _act(action: str, letters: list[str], reason: str, actor: str) -> None:
    from kflow.bus.redrive import DeadLetterActionError, act, parse_letter_id

    s = require_broker()
    try:
        selection = [parse_letter_id(x) for x in letters]
        results = act(s.kafka_bootstrap, s.topic_prefix, selection, action,  # type: ignore[arg-type]
                      actor, reason, int(time.time() * 1000))  # fmt: skip
    except DeadLetterActionError as e:
        raise _fail(str(e), 2) from e
    except KflowError as e:
        raise _fail(str(e)) from e
    for r in results:
        typer.echo(f"{r.partition}:{r.offset} {r.outcome}: {r.detail}")
    if any(r.outcome not in ("redriven", "discarded") for r in results):
        raise typer.Exit(1)


@dlq_app.command("redrive")
def dlq_redrive(
    letters: Annotated[list[str], typer.Argument(help="letters as partition:offset")],
    actor: ActorOption = "cli",
) -> None:
    """Send letters back to their source topic; a letter already redriven or discarded is
    reported and not sent again (exit 1).

    Example: kflow dlq redrive 0:17 0:18
    """
    _act("redrive", letters, "", actor)


@dlq_app.command("discard")
def dlq_discard(
    letters: Annotated[list[str], typer.Argument(help="letters as partition:offset")],
    reason: Annotated[str, typer.Option(help="why (required, recorded)")] = "",
    actor: ActorOption = "cli",
) -> None:
    """Mark letters discarded with a reason; they are never redriven.

    Example: kflow dlq discard 0:17 --reason "test data"
    """
    _act("discard", letters, reason, actor)


def register(app: typer.Typer) -> None:
    """Add ``retry``, ``bulk`` and the ``dlq`` group."""
    app.command("retry")(retry)
    app.command("bulk")(bulk)
    app.add_typer(dlq_app, name="dlq")
