"""``kflow run api`` / ``kflow run projector``: the read side's long-running processes."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

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
    """Serve the read-model API with uvicorn until interrupted."""
    import uvicorn

    from kflow.api.app import create_app

    s = get_settings()
    uvicorn.run(
        create_app(api_config()),
        host=host or s.api_host,
        port=port or s.api_port,
        log_level="info",
        access_log=False,
    )


def api_cmd(
    host: Annotated[str | None, typer.Option(help="bind address [default: KFLOW_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: KFLOW_API_PORT]")] = None,
) -> None:
    """Run the read-model HTTP API (JSON, SSE, /metrics)."""
    from kflow.bus.errors import BusError
    from kflow.bus.layout import check_layout
    from kflow.bus.topics import topic_names

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
        int | None, typer.Option("--metrics-port", help="serve /metrics on this port")
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes", min=1, max=64, help="projector processes sharing the partitions"
        ),
    ] = 1,
) -> None:
    """Project the event log into PostgreSQL or Redis until interrupted."""
    from kflow.observability.metrics import serve_metrics
    from kflow.projections.service import run_projector, run_projector_processes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from kflow.bus.errors import BusError

    if processes > 1:
        raise typer.Exit(run_projector_processes(target.value, processes))
    if metrics_port is not None:
        serve_metrics(metrics_port)
    try:
        run_projector(target.value)
    except BusError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def register_run(run_app: typer.Typer) -> None:
    """Add ``api`` and ``projector`` to the ``kflow run`` group."""
    run_app.command("api")(api_cmd)
    run_app.command("projector")(projector_cmd)
