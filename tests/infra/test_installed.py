"""kflow installed from its wheel into a fresh virtualenv, run from outside the checkout.

The wheel is built and installed once per session (ADR 0002, ADR 0004). Dependencies come from
a wheelhouse in pytest's cache, filled from PyPI on the first run, so later runs need no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from kflow.bus.admin import delete_topics, list_topics
from kflow.settings import Settings
from kflow.stack import kflow_home
from tests.conftest import publish_session_key
from tests.readside.conftest import free_port
from tests.readside.dedicated import free_port_pair

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SETUP_TIMEOUT_S = 600


def _run(cmd: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, timeout=SETUP_TIMEOUT_S
    )


def _offline_or_fill(
    offline: Sequence[str | Path], fill: Sequence[str | Path]
) -> subprocess.CompletedProcess[str]:
    """Run ``offline`` (pip against the wheelhouse only); if that fails, ``fill`` it and retry."""
    result = _run(offline)
    if result.returncode != 0:
        filled = _run(fill)
        assert filled.returncode == 0, f"{' '.join(map(str, fill))}:\n{filled.stderr}"
        result = _run(offline)
    assert result.returncode == 0, f"{' '.join(map(str, offline))}:\n{result.stderr}"
    return result


@dataclass(frozen=True)
class Installed:
    """A virtualenv holding only the kflow wheel and its dependencies."""

    venv: Path
    site_packages: Path
    version: str
    elsewhere: Path

    def env(self, **settings: str) -> dict[str, str]:
        """An environment that sees nothing of the checkout: no PYTHONPATH, the venv first."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PWD")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["KFLOW_HOME"] = str(self.elsewhere / "kflow-home")
        return {**env, **settings}

    def kflow(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``kflow ARGS`` with the venv's console script, from a directory outside the checkout."""
        return subprocess.run(
            [str(self.venv / "bin" / "kflow"), *args],
            cwd=self.elsewhere,
            env=env or self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Installed:
    cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    wheelhouse = (
        Path(cache.mkdir("kflow-wheelhouse"))
        if cache is not None
        else tmp_path_factory.mktemp("kflow-wheelhouse")
    )
    base = tmp_path_factory.mktemp("installed")
    dist, venv, elsewhere = base / "dist", base / "venv", base / "elsewhere"
    elsewhere.mkdir()
    pip: list[str | Path] = [sys.executable, "-m", "pip"]
    offline: list[str | Path] = ["--no-index", "--find-links", wheelhouse]
    _offline_or_fill(
        [*pip, "wheel", "--no-deps", "--wheel-dir", dist, *offline, ROOT],
        [*pip, "download", "--dest", wheelhouse, "hatchling>=1.27,<2"],
    )
    (wheel,) = dist.glob("kflow-*.whl")
    created = _run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    target = [*pip, "--python", python]
    _offline_or_fill(
        [*target, "install", "--no-compile", *offline, wheel],
        [*pip, "wheel", "--wheel-dir", wheelhouse, "--find-links", wheelhouse, wheel],
    )
    for stale in wheelhouse.glob("kflow-*.whl"):  # `pip wheel` copied ours in; never reuse it
        stale.unlink()
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return Installed(
        venv=venv,
        site_packages=Path(purelib.stdout.strip()),
        version=wheel.name.split("-")[1],
        elsewhere=elsewhere,
    )


def test_the_wheel_installs_only_kflow_with_its_data_and_license(installed: Installed) -> None:
    site = installed.site_packages
    dist_info = site / f"kflow-{installed.version}.dist-info"
    record = (dist_info / "RECORD").read_text().splitlines()
    top_level = {line.split(",")[0].split("/")[0] for line in record}
    assert top_level - {".."} == {"kflow", dist_info.name}  # "..": the console script in bin/
    for name in ("services", "projections", "schemas", "examples", "tests", "deploy"):
        assert not (site / name).exists(), f"site-packages has a top-level {name!r}"
    license_text = (dist_info / "licenses" / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a stub
    package = site / "kflow"
    for data in (
        "devstack/stack.sh",
        "devstack/kafka.sh",
        "devstack/kafka/pom.xml",
        "examples/docpipe/docpipe.yaml",
        "projections/migrations/0001_read_model.sql",
        "schemas/avro/envelope/Envelope.avsc",
        "api/console/static/console.css",
        "py.typed",
    ):
        assert (package / data).is_file(), f"the wheel lacks kflow/{data}"
    assert not any(package.rglob("*.jar")), "the Kafka jar cache must not ship"
    assert not (package / "devstack" / "measure_startup.sh").exists()


def test_cli_and_front_door_work_from_the_install(installed: Installed) -> None:
    version = installed.kflow("--version")
    assert (version.returncode, version.stdout) == (0, f"kflow {installed.version}\n")

    imported = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import kflow; kflow.node; kflow.StepContext; print(kflow.__file__)",
        ],
        cwd=installed.elsewhere,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()) == installed.site_packages / "kflow" / "__init__.py"

    run_all = installed.kflow("run", "all", "--help")  # lists the examples found in the install
    assert run_all.returncode == 0 and "(docpipe)" in run_all.stdout


USER_NODES = """
import kflow


@kflow.node("outside.shout")
def shout(value: dict) -> dict:
    return {"text": value["text"].upper()}
"""

USER_DEFINITION = """
name: outside-shout
nodes:
  - {id: shout, type: outside.shout, queue: outside, input: {text: $input.text}}
"""


@pytest.fixture
def outside_prefix(stack: Settings) -> Iterator[str]:
    """A topic (and Redis key) prefix for this test; its topics and keys are deleted after."""
    prefix = f"test-installed-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_topics(
        stack.kafka_bootstrap, [t.name for t in list_topics(stack.kafka_bootstrap, f"{prefix}.")]
    )
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Services:
    """Long-running ``kflow`` processes of one test, each logging to a file."""

    def __init__(self, installed: Installed, env: dict[str, str], logs: Path) -> None:
        self.installed, self.env, self.logs = installed, env, logs
        self.processes: list[subprocess.Popen[str]] = []
        logs.mkdir()

    def spawn(self, name: str, *args: str) -> None:
        with (self.logs / f"{name}.out").open("w") as out:  # the child keeps its own descriptor
            self.processes.append(self.popen(args, stdout=out, stderr=subprocess.STDOUT))

    def popen(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            [str(self.installed.venv / "bin" / "kflow"), *args],
            cwd=self.installed.elsewhere,
            env=self.env,
            text=True,
            **kwargs,
        )

    def check(self) -> None:
        """Fail with the services' logs when one of them has exited."""
        if any(p.poll() is not None for p in self.processes):
            pytest.fail(f"a kflow service exited:{self.output()}")

    def output(self) -> str:
        return "".join(
            f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.iterdir())
        )

    def finish(self, process: subprocess.Popen[str], timeout_s: float = 120) -> str:
        """Wait for ``process`` to end while the services run; return its output."""
        deadline = time.monotonic() + timeout_s
        try:
            while process.poll() is None:
                self.check()
                if time.monotonic() > deadline:
                    pytest.fail(f"{process.args!r} did not end in {timeout_s} s:{self.output()}")
                time.sleep(0.2)
            out, _ = process.communicate()
        finally:
            stop(process)
            if process.stdout is not None:
                process.stdout.close()
        assert process.returncode == 0, f"{process.args!r}: {out}{self.output()}"
        return str(out)

    def wait_for_approval(self, workflow_id: str, timeout_s: float = 120) -> None:
        """Poll ``kflow events`` until the workflow's review step waits for its signal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            listed = self.installed.kflow("events", workflow_id, "--json", env=self.env)
            events = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
            if any(e["type"] == "StepScheduled" and e.get("kind") == "approval" for e in events):
                return
            time.sleep(0.5)
        pytest.fail(f"{workflow_id} never reached its approval step:{self.output()}")

    def stop(self) -> None:
        for process in self.processes:
            stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM (what Ctrl-C or a supervisor sends), then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


CLIENT_SCRIPT = """
import kflow

with kflow.Client(actor="outside-test") as client:
    handle = client.start("outside-shout", {"text": "from the client"})
    print(handle.result(timeout=90))
"""


def test_a_workflow_runs_from_the_install_outside_the_checkout(
    installed: Installed, stack: Settings, outside_prefix: str, pg_dsn: str
) -> None:
    env = installed.env(
        KFLOW_TOPIC_PREFIX=outside_prefix,
        KFLOW_KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        KFLOW_REDIS_URL=stack.redis_url,
        KFLOW_DATABASE_URL=pg_dsn,
        KFLOW_PARTITIONS="2",
    )
    package = installed.elsewhere / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nodes.py").write_text(USER_NODES)
    (installed.elsewhere / "shout.yaml").write_text(USER_DEFINITION)

    services = Services(installed, env, installed.elsewhere / "logs")
    try:
        # Steps that do not depend on each other overlap: each command is a slow process start.
        migrating = services.popen(
            ["db", "migrate"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        created = installed.kflow("topics", "create", env=env)
        assert created.returncode == 0, created.stderr
        assert f"created  {outside_prefix}.events" in created.stdout
        publish_session_key(stack.kafka_bootstrap, outside_prefix)  # what env signs with
        applied = installed.kflow("definitions", "apply", "shout.yaml", env=env)
        assert applied.returncode == 0, applied.stderr
        # One command serves the example's queues and the user's: its processors are `python
        # -m` children of the console script, and --nodes must still import from the cwd.
        services.spawn("run-all", "run", "all", "--example", "docpipe", "--nodes", "mypkg.nodes")
        assert "is up to date" in services.finish(migrating)
        shout = services.finish(
            services.popen(
                ["start", "outside-shout", "--input", '{"text": "hi"}', "--wait"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        )
        assert "WorkflowCompleted" in shout and '"HI"' in shout
        # another service's code: only `import kflow`, a Client started and awaited
        client = subprocess.run(
            [str(installed.venv / "bin" / "python"), "-c", CLIENT_SCRIPT],
            cwd=installed.elsewhere,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "{'shout': {'text': 'FROM THE CLIENT'}}"

        doc = f"doc-{uuid.uuid4().hex[:6]}"
        document = json.dumps({"doc_id": doc, "sections": 2, "failure_rate": 0})
        waiting = services.popen(
            ["start", "docpipe", "--id", doc, "--input", document, "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            services.wait_for_approval(doc)
        except BaseException:
            stop(waiting)
            raise
        signalled = installed.kflow(
            "signal", doc, "review", "--payload", '{"approved": true, "by": "t"}', env=env
        )
        assert signalled.returncode == 0, signalled.stderr
        out = services.finish(waiting)
        assert "WorkflowCompleted" in out and '"approved_by":"t"' in out
        services.check()
    finally:
        services.stop()


def test_the_demo_runs_from_the_install(
    installed: Installed, stack: Settings, outside_prefix: str, pg_dsn: str
) -> None:
    home = installed.elsewhere / "demo-home"
    user = installed.elsewhere / "fresh-user"  # a new machine: no key configured anywhere
    port = free_port()
    env = installed.env(
        HOME=str(user),
        KFLOW_HOME=str(home),
        KFLOW_TOPIC_PREFIX=outside_prefix,
        KFLOW_KAFKA_BOOTSTRAP=stack.kafka_bootstrap,
        KFLOW_REDIS_URL=stack.redis_url,
        KFLOW_DATABASE_URL=pg_dsn,
        KFLOW_API_PORT=str(port),
        KFLOW_PARTITIONS="2",
    )
    env.pop("KFLOW_API_KEY")
    created = installed.kflow("topics", "create", env=env)
    assert created.returncode == 0, created.stderr

    demo = installed.kflow("demo", "--workflows", "3", env=env, timeout=240)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "registered definition docpipe@1" in demo.stdout
    # the read side ran too, and the demo says where the console is and how to sign in
    assert "status completed" in " ".join(demo.stdout.split())
    assert f"Open http://127.0.0.1:{port}/ui and sign in with the API key" in demo.stdout
    assert (home / "demo-logs" / "orchestrator.log").is_file()
    # the console's key is saved where the CLI finds it, privately, and the CLI can use it
    saved = user / ".config" / "kflow" / "api-key"
    said = " ".join(demo.stdout.split())
    assert f"saved the demo's admin key to {saved} (mode 0600)" in said
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert saved.read_text().strip() in said
    example = re.search(r"kflow events (doc-\S+)", said)
    assert example is not None, said
    events = installed.kflow("events", example.group(1), env=env)
    assert events.returncode == 0 and "WorkflowCompleted" in events.stdout, events.stderr
    assert not (installed.site_packages / ".kflow").exists()
    assert not (installed.site_packages / "kflow" / ".kflow").exists()


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    """A KFLOW_HOME user ``postgres`` can enter (pytest's temp dirs are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="kflow-installed-home-"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    jars = kflow_home() / "cache"
    if jars.is_dir():  # spare the test a Maven resolve; the scripts still run from the install
        (home / "cache").symlink_to(jars)
    yield home
    shutil.rmtree(base, ignore_errors=True)


def test_dev_up_status_and_down_from_the_install(installed: Installed, fresh_home: Path) -> None:
    """``kflow dev up`` runs the shipped scripts and starts servers where the settings point."""
    kafka, pg, redis_port = free_port_pair(), free_port(), free_port()
    env = installed.env(
        KFLOW_HOME=str(fresh_home),
        KFLOW_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka}",
        KFLOW_DATABASE_URL=f"postgresql://kflow:kflow@127.0.0.1:{pg}/kflow",
        KFLOW_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    for name in ("KFLOW_KAFKA_PORT", "KFLOW_PG_PORT", "KFLOW_REDIS_PORT"):
        env.pop(name, None)
    scripts = installed.site_packages / "kflow" / "devstack"
    shipped = sorted(scripts.rglob("*"))
    try:
        up = installed.kflow("dev", "up", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        status = installed.kflow("dev", "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        for address in (f"127.0.0.1:{kafka}", f"127.0.0.1:{pg}", f"127.0.0.1:{redis_port}"):
            assert address in up.stdout and address in status.stdout, address
        rows = [line for line in status.stdout.splitlines() if "127.0.0.1:" in line]
        assert len(rows) == 3 and all(" up " in row for row in rows), status.stdout
        for data in ("kafka/data", "postgres/data", "redis"):  # state in KFLOW_HOME only
            assert (fresh_home / data).is_dir(), data
        assert sorted(scripts.rglob("*")) == shipped  # nothing written next to the scripts
    finally:
        down = installed.kflow("dev", "down", env=env, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    after = installed.kflow("dev", "status", env=env)
    assert after.returncode == 1 and after.stdout.count(" down ") == 3, after.stdout


def test_dev_up_refuses_a_port_its_settings_do_not_point_at(installed: Installed) -> None:
    env = installed.env(KFLOW_KAFKA_BOOTSTRAP="127.0.0.1:9092", KFLOW_KAFKA_PORT="19092")
    refused = installed.kflow("dev", "up", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "KFLOW_KAFKA_PORT=19092 but KFLOW_KAFKA_BOOTSTRAP points at 127.0.0.1:9092" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr and refused.stdout == ""
