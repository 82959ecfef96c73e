"""Redis key and channel names shared by the Redis projection and the API."""

from __future__ import annotations


def status_key(prefix: str, workflow_id: str) -> str:
    """Hash with one workflow's hot status and step summary."""
    return f"{prefix}wf:{workflow_id}"


def events_channel(prefix: str, workflow_id: str) -> str:
    """Pub/sub channel that carries each of the workflow's events as JSON."""
    return f"{prefix}wf:{workflow_id}:events"
