"""Every ``kflow`` command answers ``--help``, and ``kflow --version`` prints the version."""

from __future__ import annotations

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

import kflow
from kflow.cli.main import _register, app

_register()
runner = CliRunner()


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(command, TyperGroup):
        for name, sub in sorted(command.commands.items()):
            paths += _command_paths(sub, (*path, name))
    return paths


def test_every_command_and_group_has_help() -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert ("demo",) in paths and ("run", "all") in paths and ("dev", "up") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"kflow {' '.join(path)} --help: {result.output}"
        assert "usage:" in result.output.lower(), f"kflow {' '.join(path)} --help"


def test_version_prints_the_version_and_exits_0() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"kflow {kflow.__version__}\n"


def test_demo_help_is_the_demos_own() -> None:
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    assert "usage: kflow demo" in result.output and "--workflows" in result.output
