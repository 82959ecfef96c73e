"""The Kafka reachability check shared by the CLI commands that talk to the broker."""

from __future__ import annotations

import typer

from kflow.bus.admin import broker_reachable
from kflow.settings import Settings, get_settings


def require_broker(timeout_s: float = 3.0) -> Settings:
    """The settings, after checking Kafka answers within ``timeout_s``; else exit 1 with a hint."""
    settings = get_settings()
    if not broker_reachable(settings.kafka_bootstrap, timeout_s=timeout_s):
        typer.echo(
            f"error: Kafka is not reachable at {settings.kafka_bootstrap}; "
            "start it with `kflow dev up` or set KFLOW_KAFKA_BOOTSTRAP",
            err=True,
        )
        raise typer.Exit(1)
    return settings
