"""A private single-node broker that serves clients only over SASL_SSL (``kafka.sh``)."""

from __future__ import annotations

from pathlib import Path

from tests.readside.dedicated import DedicatedKafka

USER, PASSWORD = "alice", "alice-Secret-7f3a9"
"""The SCRAM-SHA-512 user the broker is formatted with (tests grep outputs for the password)."""


class SaslSslKafka(DedicatedKafka):
    """``kafka.sh up`` with ``KFLOW_KAFKA_LISTENER=SASL_SSL`` on ``port`` (+1 controller);
    not started until :meth:`start`."""

    def __init__(self, port: int, home: Path) -> None:
        listener = {
            "KFLOW_KAFKA_LISTENER": "SASL_SSL",
            "KFLOW_KAFKA_SCRAM_USERS": f"{USER}:{PASSWORD}",
        }
        super().__init__(port, home, extra_env=listener, start=False)
        self.ca = self.dir / "kafka" / "ssl" / "ca.crt"

    def client_env(self, password: str = PASSWORD, ca: Path | None = None) -> dict[str, str]:
        """``KFLOW_*`` variables that make kflow talk to this broker (password from a file)."""
        secret = self.dir / f"pw-{abs(hash(password))}"
        secret.write_text(password + "\n")
        return {
            "KFLOW_KAFKA_BOOTSTRAP": self.bootstrap,
            "KFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KFLOW_KAFKA_SASL_USERNAME": USER,
            "KFLOW_KAFKA_SASL_PASSWORD_FILE": str(secret),
            "KFLOW_KAFKA_SSL_CA_LOCATION": str(ca or self.ca),
        }
