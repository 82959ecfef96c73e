"""``kflow outbox install|status|retry`` and ``kflow run relay``: the transactional outbox."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated, Any, NoReturn

import psycopg
import typer
from confluent_kafka import KafkaException

from kflow.bus.credentials import CredentialsError, command_signer
from kflow.bus.errors import BusError
from kflow.bus.layout import check_layout
from kflow.bus.topics import topic_names
from kflow.relay.outbox import (
    dsn_location,
    failed_rows,
    install,
    is_installed,
    outbox_stats,
    retry_failed,
)
from kflow.settings import get_settings

outbox_app = typer.Typer(
    help="The transactional outbox: start workflows from your service's transactions.",
    no_args_is_help=True,
)

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL DSN of the database holding the outbox [default: KFLOW_DATABASE_URL]",
    ),
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _dsn(dsn: str | None) -> str:
    return dsn or get_settings().database_url


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        _fail(f"cannot connect to PostgreSQL at {dsn_location(dsn)}: {e}".strip())


def _require_table(conn: psycopg.Connection[Any], dsn: str) -> None:
    if not is_installed(conn):
        _fail(
            f"no outbox table in {dsn_location(dsn)}; run: kflow outbox install --dsn '<your DSN>'"
        )


@outbox_app.command("install")
def install_cmd(dsn: DsnOption = None) -> None:
    """Create the outbox table, indexes and NOTIFY trigger (safe to run again).

    Example: kflow outbox install --dsn postgresql://app:secret@db/app
    """
    target = _dsn(dsn)
    with _connect(target) as conn:
        try:
            install(conn)
        except psycopg.Error as e:
            _fail(f"installing the outbox in {dsn_location(target)} failed: {e}")
    typer.echo(f"outbox installed in {dsn_location(target)}")


@outbox_app.command("status")
def status_cmd(
    dsn: DsnOption = None,
    show_failed: Annotated[int, typer.Option(min=0, help="failed rows to list")] = 10,
) -> None:
    """Rows pending, failed and published, the oldest pending row's age, and failed rows."""
    target = _dsn(dsn)
    with _connect(target) as conn:
        _require_table(conn, target)
        stats = outbox_stats(conn)
        failed = failed_rows(conn, show_failed) if show_failed else []
    typer.echo(
        f"pending {stats.pending}  failed {stats.failed}  published {stats.published}  "
        f"oldest pending {stats.oldest_pending_age_s:.1f}s"
    )
    for row in failed:
        typer.echo(f"failed  id={row.id} workflow={row.workflow_id} name={row.name}: {row.reason}")
    if stats.failed:
        typer.echo("fix the rows (UPDATE kflow_outbox ...), then: kflow outbox retry --all")


@outbox_app.command("retry")
def retry_cmd(
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="row id to retry (repeatable)")
    ] = None,
    all_failed: Annotated[bool, typer.Option("--all", help="retry every failed row")] = False,
    dsn: DsnOption = None,
) -> None:
    """Make failed rows eligible for publishing again (after fixing them)."""
    if not ids and not all_failed:
        raise typer.BadParameter("give --id N (repeatable) or --all", param_hint="--id/--all")
    target = _dsn(dsn)
    with _connect(target) as conn:
        _require_table(conn, target)
        with conn.transaction():
            count = retry_failed(conn, None if all_failed else ids)
    typer.echo(f"{count} row(s) queued again")


def relay_cmd(
    dsn: DsnOption = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="rows per transaction")] = 500,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, help="seconds between checks without a NOTIFY")
    ] = 1.0,
    retention: Annotated[
        float, typer.Option(min=0, help="seconds to keep published rows before deleting them")
    ] = 86_400.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve /metrics, /healthz and /readyz on this port")
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            "--metrics-host",
            help="address of the metrics port [default: KFLOW_METRICS_HOST or 127.0.0.1]",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format", help="json or text (default: text on a terminal, json otherwise)"
        ),
    ] = None,
) -> None:
    """Publish committed outbox rows to {prefix}.commands as StartWorkflow (runs until Ctrl-C).

    Several relays may run against one table. Example: kflow run relay --dsn postgresql://...
    """
    from kflow.cli.run import configure_cli_logging, start_health_server
    from kflow.relay.relay import Relay, RelayConfig

    configure_cli_logging(log_level, log_format)
    settings = get_settings()
    target = _dsn(dsn)
    with _connect(target) as conn:
        _require_table(conn, target)
    try:  # as every other service: a wrong prefix or a missing topic is one line at start-up
        check_layout(
            settings.kafka_bootstrap,
            settings.topic_prefix,
            [topic_names(settings.topic_prefix).commands],
        )
    except BusError as e:
        _fail(str(e))
    try:
        relay = Relay(
            RelayConfig(
                dsn=target,
                bootstrap=settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                batch_size=batch_size,
                poll_interval_s=poll_interval,
                retention_s=retention,
                max_payload_bytes=settings.max_payload_bytes,
                signer=command_signer(settings, "the outbox relay's StartWorkflow"),
            )
        )
    except CredentialsError as e:
        _fail(str(e))
    except KafkaException as e:
        _fail(f"invalid Kafka settings for {settings.kafka_bootstrap}: {e}")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        relay.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start_health_server(metrics_port, metrics_host, "relay")
    relay.run()


def register(app: typer.Typer) -> None:
    """Add ``kflow outbox`` and ``kflow run relay``."""
    from kflow.cli.run import run_app

    if any(group.typer_instance is outbox_app for group in app.registered_groups):
        return  # registered already (tests call the CLI's _register more than once)
    app.add_typer(outbox_app, name="outbox")
    run_app.command("relay")(relay_cmd)
