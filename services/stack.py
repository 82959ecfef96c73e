"""Local stack control: run ``kflow/devstack/stack.sh`` and probe Kafka, PostgreSQL, Redis."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

from kflow.bus.probe import KafkaConnectError, check_connection
from kflow.settings import Settings, SettingsError

# Not resolved: in a checkout kflow/devstack is the symlink to deploy/local (ADR 0002); installed,
# it is package data. Either way only read: state goes to kflow_home() (ADR 0004).
DEVSTACK = Path(__file__).parent / "devstack"
STACK_SCRIPT = DEVSTACK / "stack.sh"
KAFKA_SCRIPT = DEVSTACK / "kafka.sh"
ROOT_HOME = Path("/var/lib/kflow")


def kflow_home() -> Path:
    """Where the local stack keeps data, logs and the Kafka jars.

    ``$KFLOW_HOME``, else ``~/.kflow``; for root ``/var/lib/kflow``, because PostgreSQL runs
    as user ``postgres``, which cannot enter root's private home (ADR 0004).
    """
    if home := os.environ.get("KFLOW_HOME"):
        return Path(home)
    return ROOT_HOME if os.geteuid() == 0 else Path.home() / ".kflow"


@dataclass(frozen=True)
class ServerHealth:
    """One server's state as seen from this process."""

    name: str
    address: str
    pid: int | None
    healthy: bool
    detail: str
    log: Path | None


LOCAL_HOSTS = ("127.0.0.1", "localhost")


def stack_env() -> dict[str, str]:
    """The environment for ``stack.sh``/``kafka.sh``: this process's, with ``KFLOW_HOME`` set."""
    return {**os.environ, "KFLOW_HOME": str(kflow_home())}


def server_ports(settings: Settings) -> dict[str, str]:
    """The ``stack.sh`` port variables for the servers ``settings`` point at.

    The local stack starts its servers where kflow will look for them, so a user moves them
    with the usual ``KFLOW_KAFKA_BOOTSTRAP``, ``KFLOW_DATABASE_URL`` and ``KFLOW_REDIS_URL``.
    Raises :class:`SettingsError` for an address the local stack cannot serve (another host,
    several brokers) or a ``stack.sh`` port variable that disagrees with the settings.
    """
    wanted = {
        "KFLOW_KAFKA_PORT": ("KFLOW_KAFKA_BOOTSTRAP", f"//{settings.kafka_bootstrap}", 9092),
        "KFLOW_PG_PORT": ("KFLOW_DATABASE_URL", settings.database_url, 5432),
        "KFLOW_REDIS_PORT": ("KFLOW_REDIS_URL", settings.redis_url, 6379),
    }
    ports: dict[str, str] = {}
    problems: list[str] = []
    for variable, (setting, address, default) in wanted.items():
        parts = urlsplit(address)
        shown = (  # never the URL's password
            settings.kafka_bootstrap
            if setting == "KFLOW_KAFKA_BOOTSTRAP"
            else _host_port(address, default)
        )
        if "," in parts.netloc or parts.hostname not in LOCAL_HOSTS:
            problems.append(
                f"  {setting} points at {shown}: the local stack serves one server on"
                " 127.0.0.1; unset it, or point it at 127.0.0.1:PORT"
            )
            continue
        port = str(parts.port or default)
        given = os.environ.get(variable)
        if given is not None and given != port:
            problems.append(
                f"  {variable}={given} but {setting} points at {shown}: set"
                f" {setting} to port {given} (kflow looks for the server there) and drop"
                f" {variable}"
            )
        ports[variable] = port
    if problems:
        raise SettingsError("kflow dev cannot start the local stack:\n" + "\n".join(problems))
    return ports


def run_stack(command: str, settings: Settings) -> int:
    """Run ``stack.sh <command>`` for the servers ``settings`` point at; return its exit code.

    Output is passed through. Raises :class:`SettingsError` (see :func:`server_ports`).
    """
    env = {**stack_env(), **server_ports(settings)}
    return subprocess.run(["bash", str(STACK_SCRIPT), command], env=env, check=False).returncode


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _host_port(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


def kafka_health(settings: Settings) -> ServerHealth:
    home = kflow_home() / "kafka"
    try:
        brokers = check_connection(settings.kafka_bootstrap, settings, timeout_s=3.0)
        ok, detail = True, f"answers metadata ({brokers} broker(s), {_kafka_auth(settings)})"
    except (KafkaConnectError, SettingsError) as e:
        ok, detail = False, str(e)
    return ServerHealth(
        "kafka", settings.kafka_bootstrap, _read_pid(home / "kafka.pid"), ok, detail,
        home / "server.out",
    )  # fmt: skip


def _kafka_auth(settings: Settings) -> str:
    """How kflow logs in, without secrets (``SASL_SSL SCRAM-SHA-512 as alice``)."""
    protocol = settings.kafka_security_protocol
    if not protocol.startswith("SASL_"):
        return protocol
    who = settings.kafka_sasl_username or settings.kafka_oauth_client_id or "?"
    return f"{protocol} {settings.kafka_sasl_mechanism} as {who}"


def postgres_health(settings: Settings) -> ServerHealth:
    home = kflow_home() / "postgres"
    try:
        with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        ok, detail = True, f"PostgreSQL {version[0] if version else '?'}"
    except psycopg.Error as e:
        ok, detail = False, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ServerHealth(
        "postgres",
        _host_port(settings.database_url, 5432),
        _read_pid(home / "data" / "postmaster.pid"),
        ok,
        detail,
        home / "postgres.log",
    )


def redis_health(settings: Settings) -> ServerHealth:
    home = kflow_home() / "redis"
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        info = client.info("server")
        ok, detail = True, f"Redis {info.get('redis_version', '?')}"
    except redis.RedisError as e:
        ok, detail = False, str(e)
    finally:
        client.close()
    return ServerHealth(
        "redis",
        _host_port(settings.redis_url, 6379),
        _read_pid(home / "redis.pid"),
        ok,
        detail,
        home / "redis.log",
    )


def stack_health(settings: Settings) -> list[ServerHealth]:
    """Health of Kafka, PostgreSQL and Redis at the addresses in ``settings``."""
    return [kafka_health(settings), postgres_health(settings), redis_health(settings)]
