"""``kflow topics create|list``: the kflow topics on the configured Kafka cluster."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kflow.bus.admin import (
    TopicAdminError,
    cluster_policy,
    create_topics,
    describe_topics,
    list_topics,
)
from kflow.bus.topics import BUILTIN_QUEUES, topic_problems, topic_specs, validate_prefix
from kflow.cli.broker import require_broker
from kflow.settings import get_settings

topics_app = typer.Typer(help="Create and inspect kflow topics.", no_args_is_help=True)

PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="topic prefix [default: KFLOW_TOPIC_PREFIX]")
]


def _prefix(prefix: str | None) -> str:
    try:
        return validate_prefix(prefix if prefix is not None else get_settings().topic_prefix)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--prefix") from e


@topics_app.command("create")
def create(
    prefix: PrefixOption = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions", min=1, max=1024, help="partitions [default: KFLOW_PARTITIONS]"
        ),
    ] = None,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", help="node queue to make a task topic for (repeatable)"),
    ] = None,
) -> None:
    """Create every kflow topic that does not exist yet; check the ones that do.

    Prints what it will create (partitions, replicas, min.insync.replicas, cleanup policy).
    An existing topic with another partition count or fewer replicas is reported by name
    with the fix, and nothing is created (exit 1); a wrong cleanup policy is set right.
    """
    settings = get_settings()
    try:
        specs = topic_specs(
            _prefix(prefix),
            partitions if partitions is not None else settings.partitions,
            queue or BUILTIN_QUEUES,
            closed_retention_ms=settings.closed_retention_ms,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--queue") from e
    require_broker(timeout_s=10.0)
    bootstrap = settings.kafka_bootstrap
    try:
        policy = cluster_policy(bootstrap, settings)
        existing = describe_topics(bootstrap, [s.name for s in specs])
        problems = topic_problems(specs, existing, policy)
        # create_topics sets cleanup.policy and max.message.bytes on existing topics.
        blocking = [p for p in problems if p.kind not in ("cleanup", "record_limit")]
        if blocking:
            for problem in blocking:
                typer.echo(f"error: {problem}", err=True)
            typer.echo(
                f"error: {len(blocking)} existing topic(s) do not fit; nothing was created",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(
            f"topics at {bootstrap}: replication factor {policy.replication_factor}, "
            f"min.insync.replicas {policy.min_insync_replicas}"
        )
        for spec in specs:
            if spec.name not in existing:
                cleanup = spec.config.get("cleanup.policy", "delete")
                typer.echo(
                    f"will create {spec.name} ({spec.partitions} partitions, "
                    f"cleanup.policy={cleanup})"
                )
        created = set(create_topics(bootstrap, specs, policy=policy))
    except TopicAdminError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for problem in problems:
        typer.echo(f"fixed    {problem.text.split('. Fix:')[0]}")
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        typer.echo(f"{state:8} {spec.name} ({spec.partitions} partitions)")


@topics_app.command("list")
def list_(prefix: PrefixOption = None) -> None:
    """List the topics under the prefix with partition count and end offsets."""
    settings = require_broker(timeout_s=10.0)
    try:
        infos = list_topics(settings.kafka_bootstrap, f"{_prefix(prefix)}.")
    except TopicAdminError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    table = Table(title=f"topics at {settings.kafka_bootstrap}")
    for column in ("topic", "partitions", "end offsets", "records"):
        table.add_column(column)
    for info in infos:
        ends = " ".join(str(o) for o in info.end_offsets)
        table.add_row(info.name, str(info.partitions), ends, str(info.records))
    Console(width=200).print(table)


def register(app: typer.Typer) -> None:
    """Add the ``topics`` sub-commands to the ``kflow`` app."""
    app.add_typer(topics_app, name="topics")
