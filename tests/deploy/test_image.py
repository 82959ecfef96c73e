"""The image's build steps, run for real outside a container builder (CI has no Docker daemon).

The Dockerfile's build stage is ``sh install.sh WHEELHOUSE /opt/kflow`` from a wheelhouse that
``build.sh --wheelhouse`` makes; this runs the same two scripts, the install as a non-root user
with the system Python, and checks the installed kflow from outside the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.files import BUILD_SH, DOCKERFILE, INSTALL_SH, REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")
"""The image installs with its base's system Python; so does this test (not the dev venv's)."""
NOBODY = 65534


def _run_steps(text: str) -> list[str]:
    """The Dockerfile's RUN instructions, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith("RUN ")]


def test_the_dockerfile_builds_with_the_scripts_this_test_runs() -> None:
    text = DOCKERFILE.read_text()
    steps = _run_steps(text)
    assert steps[0] == "sh /tmp/install.sh /tmp/wheelhouse /opt/kflow"
    assert "COPY deploy/docker/install.sh /tmp/install.sh" in text
    assert "COPY deploy/docker/wheelhouse/ /tmp/wheelhouse/" in text
    assert 'ENTRYPOINT ["kflow"]' in text
    assert re.search(r"^USER \$\{KFLOW_UID\}:\$\{KFLOW_UID\}$", text, re.M)
    assert text.count("FROM ") == 2, "a build stage and a runtime stage"
    ignore = (REPO / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :] == [
        "*",
        "!deploy/docker/install.sh",
        "!deploy/docker/wheelhouse/",
    ]


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A directory a non-root user can read and write."""
    path = Path(tempfile.mkdtemp(prefix="kflow-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheelhouse(work: Path) -> Path:
    if not SYSTEM_PYTHON.exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing (apt-get install python3 python3-venv)")
    target = work / "wheelhouse"
    result = subprocess.run(
        ["bash", str(BUILD_SH), "--wheelhouse"],
        env={**os.environ, "KFLOW_WHEELHOUSE": str(target), "PYTHON": str(SYSTEM_PYTHON)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    wheels = sorted(p.name for p in target.glob("*.whl"))
    assert any(w.startswith("kflow-") for w in wheels), wheels
    assert any(w.startswith("confluent_kafka-") for w in wheels), wheels
    return target


def _as_non_root(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


def _clean_env(path_dirs: str = "/usr/local/bin:/usr/bin:/bin") -> dict[str, str]:
    """What a build step sees: no PYTHONPATH to the checkout, no pip settings from this machine."""
    return {"PATH": path_dirs, "HOME": "/nonexistent", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def venv(work: Path, wheelhouse: Path) -> Path:
    target = work / "opt-kflow"
    if os.geteuid() == 0:
        os.chown(work, NOBODY, NOBODY)
    script = work / "install.sh"
    shutil.copy(INSTALL_SH, script)
    result = subprocess.run(
        _as_non_root(["sh", str(script), str(wheelhouse), str(target)]),
        env={**_clean_env(), "PATH": f"{SYSTEM_PYTHON.parent}:/usr/bin:/bin"},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installed kflow 0.1.0 into {target}" in result.stdout
    return target


def test_install_builds_a_working_kflow_as_a_non_root_user(venv: Path, work: Path) -> None:
    assert venv.stat().st_uid == (NOBODY if os.geteuid() == 0 else os.geteuid())
    kflow = venv / "bin" / "kflow"
    located = subprocess.run(
        _as_non_root([str(venv / "bin" / "python"), "-c", "import kflow; print(kflow.__file__)"]),
        env=_clean_env(),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert located.returncode == 0, located.stderr
    assert located.stdout.startswith(str(venv)), located.stdout
    for args in (
        ["run", "orchestrator", "--help"],
        ["run", "processor", "--help"],
        ["run", "projector", "--help"],
        ["run", "api", "--help"],
        ["run", "relay", "--help"],
        ["definitions", "validate", str(venv / "examples" / "docpipe" / "docpipe.yaml")],
    ):
        result = subprocess.run(
            _as_non_root([str(kflow), *args]),
            env=_clean_env(f"{venv}/bin:/usr/bin:/bin"),
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"kflow {' '.join(args)}: {result.stderr}"
    nodes = subprocess.run(
        _as_non_root([str(venv / "bin" / "python"), "-c", "import kflow.examples.docpipe.nodes"]),
        env=_clean_env(),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nodes.returncode == 0, nodes.stderr


def test_install_fails_loudly_when_a_wheel_is_missing(work: Path, wheelhouse: Path) -> None:
    partial = work / "partial"
    partial.mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.startswith("confluent_kafka-"):
            shutil.copy(wheel, partial)
    result = subprocess.run(
        _as_non_root(["sh", str(INSTALL_SH), str(partial), str(work / "broken-venv")]),
        env={**_clean_env(), "PATH": f"{SYSTEM_PYTHON.parent}:/usr/bin:/bin"},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert "confluent-kafka" in result.stderr.lower().replace("_", "-")
