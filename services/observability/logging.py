"""Structured logs: one JSON object per line, for log shippers (stdlib only)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from kflow.observability import tracing

CONTEXT_FIELDS = (
    "workflow_id",
    "step_key",
    "seq",
    # the API's access log
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "client",
)
"""Passed with ``log.info(..., extra={"workflow_id": ...})``; copied to the JSON object."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "thread"}`` plus context fields,
    ``trace_id``/``span_id`` of the current span while tracing is on (ADR 0037), and
    ``exception`` (the formatted traceback) when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if tracing.on():
            span = tracing.current_span_context()
            if span.is_valid:
                entry["trace_id"] = f"{span.trace_id:032x}"
                entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _KflowHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (so a second call can replace it)."""


def default_format(stream: TextIO = sys.stderr) -> str:
    """``text`` for a person at a terminal, ``json`` for everything else."""
    return "text" if stream.isatty() else "json"


def configure_logging(level: str, json: bool = True, stream: TextIO = sys.stderr) -> None:
    """Send every logger's records at ``level`` and above to ``stream``, as JSON or text.

    Replaces the handler an earlier call installed (calling it twice does not duplicate
    lines) and leaves other handlers alone (e.g. a test runner's capture).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"--log-level {level!r} is not a level; use debug, info, warning or error")
    handler = _KflowHandler(stream)
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _KflowHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
