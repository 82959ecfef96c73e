"""``kflow definitions apply|list|validate``: the workflow definitions registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kflow.bus.admin import TopicAdminError, create_topics
from kflow.bus.topics import task_topic_spec, topic_names
from kflow.cli.broker import require_broker
from kflow.core.definition import WorkflowDefinition, load_definition
from kflow.core.errors import DefinitionError
from kflow.registry.topic import DefinitionFollower, RegistryError, publish_definition
from kflow.settings import Settings, get_settings

definitions_app = typer.Typer(
    help="Register and inspect workflow definitions.", no_args_is_help=True
)

FileArg = Annotated[Path, typer.Argument(help="definition file (.yaml, .yml or .json)")]


def _load(path: Path) -> WorkflowDefinition:
    if not path.is_file():
        typer.echo(f"error: {path}: no such file", err=True)
        raise typer.Exit(2)
    try:
        return load_definition(path)
    except DefinitionError as e:
        typer.echo(f"error: {path}: {e}", err=True)
        raise typer.Exit(2) from e


@definitions_app.command("validate")
def validate(path: FileArg) -> None:
    """Check a definition without registering it.

    Example: kflow definitions validate examples/docpipe/docpipe.yaml
    """
    definition = _load(path)
    typer.echo(f"ok: {definition.key} ({len(definition.nodes)} nodes)")


@definitions_app.command("apply")
def apply(
    path: FileArg,
    actor: Annotated[str | None, typer.Option(help="who registers it (recorded)")] = None,
) -> None:
    """Validate a definition and publish it to the definitions topic (key name@version).

    Task topics for its queues are created if missing. Running workflows keep
    the version they started with.

    Example: kflow definitions apply examples/docpipe/docpipe.yaml
    """
    definition = _load(path)
    require_broker()
    publish(get_settings(), definition, actor)


def publish(settings: Settings, definition: WorkflowDefinition, actor: str | None) -> None:
    """Create the task topics of the definition's queues, publish it and say so; exit 1 on error."""
    names = topic_names(settings.topic_prefix)
    try:
        create_topics(
            settings.kafka_bootstrap,
            [task_topic_spec(names, q, settings.partitions) for q in definition.task_queues],
        )
        key = publish_definition(settings.kafka_bootstrap, settings.topic_prefix, definition, actor)
    except (RegistryError, TopicAdminError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"applied {key} to {names.definitions}")


@definitions_app.command("list")
def list_() -> None:
    """List registered definitions (records that fail validation are named on stderr).

    Example: kflow definitions list
    """
    require_broker()
    settings = get_settings()
    try:
        follower = DefinitionFollower(settings.kafka_bootstrap, settings.topic_prefix)
        follower.catch_up()
        follower.close()
    except RegistryError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    table = Table(title=f"definitions in {topic_names(settings.topic_prefix).definitions}")
    for column in ("name", "version", "nodes", "queues", "description"):
        table.add_column(column)
    for d in follower.store.all():
        queues = sorted({n.task_queue for n in d.nodes})
        table.add_row(
            d.name, str(d.version), str(len(d.nodes)), " ".join(queues), d.description or ""
        )
    Console(width=160).print(table)
    for refused in follower.store.refused():
        typer.echo(
            f"warning: {refused.name}@{refused.version} is refused and not listed: "
            f"{refused.message}",
            err=True,
        )


def register(app: typer.Typer) -> None:
    """Add ``kflow definitions``."""
    app.add_typer(definitions_app, name="definitions")
