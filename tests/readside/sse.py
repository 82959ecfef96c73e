"""A minimal SSE client for tests: yields (id, event, data) per message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


def sse_messages(response: httpx.Response) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Parse ``text/event-stream`` lines into (seq, type, payload); comments are skipped."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                yield int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
