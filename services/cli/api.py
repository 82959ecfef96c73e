"""``kflow run api`` / ``kflow run projector``: the read side's long-running processes."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from kflow.cli.run import (
    LogFormatOption,
    MetricsHostOption,
    configure_cli_logging,
    exit_on_fatal,
    start_health_server,
)
from kflow.settings import get_settings

if TYPE_CHECKING:
    from kflow.api.resources import ApiConfig


class Target(StrEnum):
    """Where ``kflow run projector`` writes."""

    POSTGRES = "postgres"
    REDIS = "redis"


def api_config() -> ApiConfig:
    """The API's configuration from the ``KFLOW_*`` environment."""
    from kflow.api.resources import ApiConfig

    s = get_settings()
    return ApiConfig(
        database_url=s.database_url,
        db_schema=s.db_schema,
        redis_url=s.redis_url,
        redis_prefix=s.redis_prefix,
        kafka_bootstrap=s.kafka_bootstrap,
        topic_prefix=s.topic_prefix,
        max_payload_bytes=s.max_payload_bytes,
        command_timeout_s=s.api_command_timeout_s,
        auth_cache_s=s.api_auth_cache_s,
    )


def serve_api(host: str | None = None, port: int | None = None) -> None:
    """Serve the read-model API with uvicorn until interrupted.

    Logging is the caller's (:func:`kflow.observability.logging.configure_logging`):
    uvicorn's own loggers go through the same handler, its access log is replaced by the
    app's (``kflow.api.access``, with route, status and duration fields).
    """
    import uvicorn

    from kflow.api.app import create_app
    from kflow.api.server import uvicorn_config

    s = get_settings()
    config = uvicorn_config(
        create_app(api_config()),
        host or s.api_host,
        port or s.api_port,
        log_config=None,  # keep kflow's handler: JSON lines like every other service
        access_log=False,
    )
    uvicorn.Server(config).run()


def api_cmd(
    host: Annotated[str | None, typer.Option(help="bind address [default: KFLOW_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: KFLOW_API_PORT]")] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
    log_format: LogFormatOption = None,
) -> None:
    """Run the read-model HTTP API (JSON, SSE, /metrics, /healthz, /readyz on its port)."""
    from kflow.bus.errors import BusError
    from kflow.bus.layout import check_layout
    from kflow.bus.topics import topic_names

    configure_cli_logging(log_level, log_format)
    s = get_settings()
    names = topic_names(s.topic_prefix)
    try:
        check_layout(s.kafka_bootstrap, s.topic_prefix, [names.commands, names.events])
    except BusError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    serve_api(host, port)


def projector_cmd(
    target: Annotated[Target, typer.Option("--target", help="postgres or redis")],
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="serve /metrics, /healthz and /readyz on this port"),
    ] = None,
    metrics_host: MetricsHostOption = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes", min=1, max=64, help="projector processes sharing the partitions"
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
    log_format: LogFormatOption = None,
) -> None:
    """Project the event log into PostgreSQL or Redis until interrupted."""
    from kflow.bus.errors import BusError
    from kflow.projections.service import run_projector, run_projector_processes

    configure_cli_logging(log_level, log_format)
    if processes > 1:
        raise typer.Exit(run_projector_processes(target.value, processes))
    start_health_server(metrics_port, metrics_host, f"projector-{target.value}")
    try:
        exit_on_fatal(lambda: run_projector(target.value))
    except BusError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def register_run(run_app: typer.Typer) -> None:
    """Add ``api`` and ``projector`` to the ``kflow run`` group."""
    run_app.command("api")(api_cmd)
    run_app.command("projector")(projector_cmd)
