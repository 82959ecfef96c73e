"""``kflow dev status`` and ``kflow topics create|list`` against the running stack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from kflow.bus.admin import delete_topics, list_topics
from kflow.cli import dev, topics
from kflow.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    dev.register(app)
    topics.register(app)
    return app


@pytest.fixture
def fresh_prefix(stack: Settings) -> Iterator[str]:
    prefix = f"test-cli-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_topics(
        stack.kafka_bootstrap, [t.name for t in list_topics(stack.kafka_bootstrap, prefix)]
    )


def test_dev_status_reports_three_healthy_servers(app: typer.Typer, stack: Settings) -> None:
    result = CliRunner().invoke(app, ["dev", "status"])
    assert result.exit_code == 0, result.output
    for name in ("kafka", "postgres", "redis"):
        assert name in result.output
    assert "down" not in result.output


def test_topics_create_is_idempotent_and_list_shows_them(
    app: typer.Typer, stack: Settings, fresh_prefix: str
) -> None:
    args = ["topics", "create", "--prefix", fresh_prefix, "--partitions", "3", "--queue", "gpu"]
    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)

    assert first.exit_code == 0, first.output
    assert f"created  {fresh_prefix}.tasks.gpu (3 partitions)" in first.output
    assert f"{fresh_prefix}.tasks.default" not in first.output  # --queue replaces the defaults
    assert second.exit_code == 0 and "created" not in second.output

    listed = CliRunner().invoke(app, ["topics", "list", "--prefix", fresh_prefix])
    assert listed.exit_code == 0, listed.output
    assert f"{fresh_prefix}.events" in listed.output
    assert f"{fresh_prefix}.snapshots" in listed.output


def test_bad_prefix_names_the_option(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["topics", "create", "--prefix", "no spaces"])
    assert result.exit_code == 2
    assert "--prefix" in result.output
