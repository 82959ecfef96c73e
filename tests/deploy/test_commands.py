"""Every kflow command that docker-compose.yml and deploy/k8s run exists, with those options."""

from __future__ import annotations

import subprocess

import pytest
import typer

from kflow.cli.main import _register, app
from kflow.cli.run import service_command
from tests.deploy.files import REPO, compose_commands, k8s_commands

IMAGE_EXAMPLES = "/opt/kflow/examples/"
"""Where the image links the shipped examples (deploy/docker/install.sh)."""


def _all_commands() -> list[list[str]]:
    unique: dict[str, list[str]] = {}
    for source in (compose_commands(), k8s_commands()):
        for lines in source.values():
            for args in lines:
                unique.setdefault(" ".join(args), args)
    return list(unique.values())


COMMANDS = _all_commands()


@pytest.fixture(scope="module")
def kflow_cli() -> typer.core.TyperGroup:
    """The ``kflow`` command tree, built once (registering twice would add every group twice)."""
    _register()
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    return command


def test_compose_and_k8s_run_every_role_and_setup_step() -> None:
    def leading(source: dict[str, list[list[str]]]) -> set[str]:
        return {
            " ".join(args[:3] if args[0] == "run" and args[1] == "projector" else args[:2])
            for lines in source.values()
            for args in lines
        }

    expected = {
        "run orchestrator",
        "run processor",
        "run projector --target",
        "run api",
        "run relay",
        "topics create",
        "db migrate",
        "outbox install",
        "definitions apply",
    }
    # compose makes the relay's API key in init; on Kubernetes it is a Secret (secret.yaml)
    assert leading(compose_commands()) == expected | {"apikey create"}
    assert leading(k8s_commands()) == expected


def _parse(kflow_cli: typer.core.TyperGroup, args: list[str]) -> dict[str, object]:
    """Parse ``kflow <args>`` down to its command, converting every value, without running it."""
    group, remaining = kflow_cli, list(args)
    ctx = group.context_class(group, info_name="kflow")
    while True:
        name, *remaining = remaining
        sub = group.get_command(ctx, name)
        assert sub is not None, f"no command {name} in kflow {' '.join(args)}"
        if not isinstance(sub, typer.core.TyperGroup):
            return dict(sub.make_context(name, remaining, parent=ctx).params)
        group, ctx = sub, sub.context_class(sub, info_name=name, parent=ctx)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_kflow_help_accepts_the_deployed_command_line(
    kflow_cli: typer.core.TyperGroup, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited:
        _parse(kflow_cli, [*args, "--help"])
    assert exited.value.exit_code == 0
    usage = next(line for line in capsys.readouterr().out.splitlines() if "Usage:" in line)
    assert f" {args[0]} {args[1]} " in usage, usage  # the subcommand's own help, not a parent's


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_the_deployed_option_values_parse(
    kflow_cli: typer.core.TyperGroup, args: list[str]
) -> None:
    """--help stops before values are converted: parse them (choices, ints, paths), not run."""
    local = [a.replace(IMAGE_EXAMPLES, f"{REPO}/examples/") for a in args]
    assert _parse(kflow_cli, local), f"kflow {' '.join(args)} parsed to no parameters"


def test_the_console_command_rejects_an_unknown_option_even_with_help(
    kflow_cli: typer.core.TyperGroup,
) -> None:
    """The checks above mean something: the real ``kflow`` fails on a misspelt option."""
    result = subprocess.run(
        service_command("run", "orchestrator", "--metrics-prot", "9100", "--help"),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--metrics-prot" in result.stderr
    with pytest.raises(Exception, match="metrics-prot") as raised:
        _parse(kflow_cli, ["run", "orchestrator", "--metrics-prot", "1", "--help"])
    assert type(raised.value).__name__ == "NoSuchOption"
    with pytest.raises(Exception, match="mongo") as bad_value:
        _parse(kflow_cli, ["run", "projector", "--target", "mongo"])
    assert type(bad_value.value).__name__ == "BadParameter"
