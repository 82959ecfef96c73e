"""Run orchestrators and processors as subprocesses (so tests can SIGKILL them)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from kflow.cli.run import service_command
from kflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcesses:
    """Named service subprocesses on one topic prefix."""

    settings: Settings
    redis_prefix: str
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KFLOW_TOPIC_PREFIX": self.settings.topic_prefix,
            "KFLOW_PARTITIONS": str(self.settings.partitions),
            "KFLOW_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "KFLOW_REDIS_URL": self.settings.redis_url,
        }

    def _args(self, name: str) -> list[str]:
        kind = name.partition("-")[0]
        if kind == "orchestrator":
            return ["run", "orchestrator", "--instance", name, "--log-level", "info"]
        return [
            "run",
            "processor",
            "--queue",
            "default",
            "--concurrency",
            "16",
            "--instance",
            name,
            "--nodes",
            "tests.runtime.nodes",
            "--log-level",
            "info",
        ]

    def start(self, name: str) -> None:
        """Start (or restart) ``orchestrator-N`` or ``processor-N``."""
        with (self.log_dir / f"{name}.log").open("ab") as log:  # the child keeps its own fd
            self.procs[name] = subprocess.Popen(
                service_command(*self._args(name)),
                env=self._env(),
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        self.restarts[name] = self.restarts.get(name, -1) + 1

    def kill(self, name: str) -> None:
        """SIGKILL: no cleanup, open transaction and in-flight steps abandoned."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, name: str) -> None:
        """SIGTERM and wait (graceful)."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            if self.procs[name].poll() is None:
                self.stop(name)
            else:
                self.procs.pop(name)
