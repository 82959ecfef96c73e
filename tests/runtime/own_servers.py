"""Servers a test may stop for real: its own redis-server, never the shared stack's.

Ports come from this area's range (19420-19439), data from the test's tmp dir.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

PORTS = range(19420, 19440)
WAIT_S = 30.0  # a guard against hangs, not a speed assertion


def free_port(ports: range = PORTS) -> int:
    """The first port of ``ports`` nothing listens on."""
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {ports}")


@dataclass
class OwnRedis:
    """A redis-server on ``port`` with no persistence; :meth:`stop` kills it for real."""

    port: int
    work: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.work.mkdir(parents=True, exist_ok=True)
        with (self.work / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.work),
                ],
                stdout=log,
                stderr=log,
            )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + WAIT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    assert self.proc.poll() is None, (self.work / "redis.log").read_text()
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGKILL: connections drop at once, nothing is saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
