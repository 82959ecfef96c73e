"""The Kafka reachability check shared by the CLI commands that talk to the broker."""

from __future__ import annotations

import typer

from kflow.bus.probe import KafkaConnectError, check_connection
from kflow.settings import Settings, SettingsError, get_settings


def require_broker(timeout_s: float = 3.0) -> Settings:
    """The settings, after checking Kafka answers within ``timeout_s``; else exit 1 with
    one line naming the cause (unreachable, bad credentials, untrusted CA, wrong protocol)."""
    settings = get_settings()
    try:
        check_connection(settings.kafka_bootstrap, settings, timeout_s=timeout_s)
    except (KafkaConnectError, SettingsError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    return settings
