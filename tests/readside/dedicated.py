"""Dedicated PostgreSQL, Redis and Kafka servers for tests that stop and start them.

Outage tests must never stop the shared servers other tests use, so they start
their own: a throw-away ``initdb`` cluster, a ``redis-server`` and a KRaft broker
(``kflow/devstack/kafka.sh`` with its own data dir) on other ports.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kflow.stack import KAFKA_SCRIPT, stack_env

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def port_answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, up: bool, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        is_up = port_answers(port)
        if is_up == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} in {limit_s}s")


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class DedicatedPostgres:
    """A private PostgreSQL cluster on ``port`` with role and database ``kflow``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"kflow-pg{port}-"))
        self.data = self.dir / "data"
        self.dsn = f"postgresql://kflow:kflow@127.0.0.1:{port}/kflow"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text("kflow\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D", str(self.data),
                    "-U", "kflow",
                    "--pwfile", str(pwfile),
                    "-A", "md5",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.start()
        subprocess.run(
            ["psql", f"postgresql://kflow:kflow@127.0.0.1:{port}/postgres", "-qc",
             "CREATE DATABASE kflow"],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D", str(self.data),
                    "-l", str(self.dir / "log"),
                    "-o", f"-p {self.port} -k {self.dir} -c fsync=off"
                    " -c listen_addresses=127.0.0.1",
                    "-w", "start",
                ]
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )
        _wait_port(self.port, up=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class DedicatedRedis:
    """A private ``redis-server`` on ``port`` without persistence."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        _wait_port(self.port, up=False)

    def destroy(self) -> None:
        self.stop()


def free_port_pair() -> int:
    """A port p with p and p+1 bindable (broker and controller listeners).

    Drawn from ``KFLOW_TEST_PORTS`` (``LOW-HIGH``) when set, so tests on a shared machine keep
    to their range; else from 20000-29999. Both lie below Linux's ephemeral range (32768+),
    where the client side of other tests' connections could take p+1 before the broker binds it.
    """
    low, _, high = os.environ.get("KFLOW_TEST_PORTS", "").partition("-")
    first, last = (int(low), int(high)) if low and high else (20000, 29999)
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(first, last)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port pair in {first}-{last} for the dedicated broker")


class DedicatedKafka:
    """A private single-node KRaft broker run by ``kafka.sh`` with its own home and ports."""

    def __init__(
        self,
        port: int | None = None,
        home: Path | None = None,
        *,
        extra_env: dict[str, str] | None = None,
        start: bool = True,
    ) -> None:
        self.port = port or free_port_pair()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.dir = home or Path(tempfile.mkdtemp(prefix=f"kflow-kafka{self.port}-"))
        self.data = self.dir / "kafka" / "data"
        self.env = {
            **stack_env(),  # KFLOW_HOME: the jar cache the shared stack uses
            "KFLOW_KAFKA_DIR": str(self.dir / "kafka"),
            "KFLOW_KAFKA_PORT": str(self.port),
            "KFLOW_KAFKA_CONTROLLER_PORT": str(self.port + 1),
            "KFLOW_KAFKA_HEAP": "384m",
            **(extra_env or {}),
        }
        if start:
            self.start()

    def run(self, command: str) -> str:
        """``kafka.sh COMMAND`` for this broker; its output (raises if it fails)."""
        result = subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh {command}: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        out = self.run("up")
        if "another process" in out:  # kafka.sh reuses a foreign broker: never test against it
            raise RuntimeError(f"port {self.port} is taken by another process: {out}")
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        self.run("down")
        _wait_port(self.port, up=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
