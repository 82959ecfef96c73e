"""Liveness and readiness of one process, and the HTTP server for /metrics, /healthz, /readyz.

Components report the state of what they depend on (``health.report("redis", False, why)``);
``/readyz`` answers 200 only while every reported check is ok, ``/healthz`` answers 200 until a
component declares the process broken for good (:meth:`Health.fail`, e.g. a fatal Kafka
client error), after which the process is about to exit non-zero anyway. Every check is also
the gauge ``kflow_dependency_up{component, dependency}``, so an outage is visible in Prometheus
as well as in the probe (docs/adr/0033).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from kflow.observability.metrics import DEPENDENCY_UP, DEPENDENCY_WAITS

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class Check:
    """One dependency's last reported state."""

    ok: bool
    detail: str = ""


class Health:
    """What one process's components last reported; safe to use from any thread."""

    def __init__(self, component: str = "kflow") -> None:
        self.component = component
        self._lock = threading.Lock()
        self._checks: dict[str, Check] = {}
        self._failure: str | None = None

    def report(self, dependency: str, ok: bool, detail: str = "") -> None:
        """Record whether ``dependency`` works now (``detail`` says why not)."""
        with self._lock:
            self._checks[dependency] = Check(ok, "" if ok else detail[:500])
        DEPENDENCY_UP.labels(self.component, dependency).set(1 if ok else 0)

    def fail(self, why: str) -> None:
        """The process cannot recover (it is exiting): /healthz and /readyz answer 503."""
        with self._lock:
            self._failure = why[:500]

    @property
    def alive(self) -> bool:
        """False once :meth:`fail` was called."""
        with self._lock:
            return self._failure is None

    @property
    def ready(self) -> bool:
        """Alive and every reported dependency ok."""
        with self._lock:
            return self._failure is None and all(c.ok for c in self._checks.values())

    def status(self) -> dict[str, Any]:
        """The JSON body of /readyz: overall status and each check (``ok`` or why not)."""
        with self._lock:
            checks = {
                name: "ok" if c.ok else c.detail or "down" for name, c in self._checks.items()
            }
            body: dict[str, Any] = {"component": self.component, "checks": checks}
            if self._failure is not None:
                body["status"] = "failed"
                body["failure"] = self._failure
            elif all(c.ok for c in self._checks.values()):
                body["status"] = "ready"
            else:
                body["status"] = "unavailable"
        return body


STARTUP = "startup"
"""The check a service clears once it is connected and running (set while it starts)."""

HEALTH = Health()
"""This process's health (one service per process, like the Prometheus registry)."""


class Outage:
    """Bounded exponential backoff for one dependency, reported to a :class:`Health`.

    ``failed(error)`` marks the dependency down, counts the wait in
    ``kflow_dependency_waits_total``, logs the outage (once when it starts, then at most
    every ``log_every_s``) and returns how long to wait before trying again; ``ok()`` marks
    it up again and logs how long it was down. Safe to call from several threads or tasks.
    """

    def __init__(
        self,
        dependency: str,
        *,
        health: Health = HEALTH,
        base_s: float = 0.1,
        ceiling_s: float = 5.0,
        log_every_s: float = 10.0,
    ) -> None:
        self.dependency = dependency
        self._health = health
        self._base_s, self._ceiling_s, self._log_every_s = base_s, ceiling_s, log_every_s
        self._lock = threading.Lock()
        self._failures = 0
        self._down_since: float | None = None
        self._last_log = 0.0

    @property
    def down(self) -> bool:
        """Whether the last call reported a failure."""
        return self._down_since is not None

    def failed(self, error: BaseException) -> float:
        """Record a failed call; returns the delay before the next attempt."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            delay: float = min(self._ceiling_s, self._base_s * 2.0 ** min(self._failures - 1, 20))
            first = self._down_since is None
            if first:
                self._down_since = now
            loud = first or now - self._last_log >= self._log_every_s
            if loud:
                self._last_log = now
            down_for = now - (self._down_since or now)
        why = f"{type(error).__name__}: {error}"
        self._health.report(self.dependency, False, why)
        DEPENDENCY_WAITS.labels(self._health.component, self.dependency).inc()
        if loud:
            log.warning(
                "%s unavailable for %.0fs (%s); work waits and resumes when it is back "
                "(no retry budget is spent); next try in %.1fs",
                self.dependency,
                down_for,
                why,
                delay,
            )
        return delay

    def ok(self) -> None:
        """Record a successful call (cheap when nothing was down)."""
        if self._down_since is None and self._failures == 0:
            return
        with self._lock:
            since, self._down_since, self._failures = self._down_since, None, 0
        self._health.report(self.dependency, True)
        if since is not None:
            log.warning("%s is back after %.1fs", self.dependency, time.monotonic() - since)


def _json(start: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body, sort_keys=True).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def health_app(health: Health) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app: ``/metrics`` (Prometheus), ``/healthz`` (alive), ``/readyz`` (ready)."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start)  # type: ignore[no-any-return]
        if path == "/healthz":
            alive = health.alive
            body = {"component": health.component, "status": "ok" if alive else "failed"}
            return _json(start, "200 OK" if alive else "503 Service Unavailable", body)
        if path == "/readyz":
            ready = health.ready
            return _json(start, "200 OK" if ready else "503 Service Unavailable", health.status())
        return _json(
            start,
            "404 Not Found",
            {"error": f"no such path {path!r}; try /metrics, /healthz or /readyz"},
        )

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the logs."""


def serve_health(port: int, host: str = "127.0.0.1", health: Health = HEALTH) -> WSGIServer:
    """Serve /metrics, /healthz and /readyz on ``host:port`` from a daemon thread.

    ``shutdown()`` on the returned server stops it. Raises ``OSError`` when the port is taken.
    """
    server = make_server(
        host, port, health_app(health), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
    thread.start()
    return server
