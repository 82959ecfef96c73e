"""A private single-node broker that serves clients only over SASL_SSL (``kafka.sh``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kflow.stack import KAFKA_SCRIPT, stack_env

USER, PASSWORD = "alice", "alice-Secret-7f3a9"
"""The SCRAM-SHA-512 user the broker is formatted with (tests grep outputs for the password)."""


class SaslSslKafka:
    """``kafka.sh up`` with ``KFLOW_KAFKA_LISTENER=SASL_SSL`` on ``port`` (+1 controller)."""

    def __init__(self, port: int, home: Path) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.dir = home / "kafka"
        self.ca = self.dir / "ssl" / "ca.crt"
        self.env = {
            **stack_env(),  # KFLOW_HOME: the jar cache the shared stack uses
            "KFLOW_KAFKA_DIR": str(self.dir),
            "KFLOW_KAFKA_PORT": str(port),
            "KFLOW_KAFKA_CONTROLLER_PORT": str(port + 1),
            "KFLOW_KAFKA_HEAP": "384m",
            "KFLOW_KAFKA_LISTENER": "SASL_SSL",
            "KFLOW_KAFKA_SCRAM_USERS": f"{USER}:{PASSWORD}",
        }

    def run(self, command: str) -> str:
        result = subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kafka.sh {command}: {result.stdout}{result.stderr}")
        if "another process" in result.stdout:
            raise RuntimeError(f"port {self.port} is taken by another process")
        return result.stdout

    def client_env(self, password: str = PASSWORD, ca: Path | None = None) -> dict[str, str]:
        """``KFLOW_*`` variables that make kflow talk to this broker (password from a file)."""
        secret = self.dir.parent / f"pw-{abs(hash(password))}"
        secret.write_text(password + "\n")
        return {
            "KFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "KFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KFLOW_KAFKA_SASL_USERNAME": USER,
            "KFLOW_KAFKA_SASL_PASSWORD_FILE": str(secret),
            "KFLOW_KAFKA_SSL_CA_LOCATION": str(ca or self.ca),
        }
