"""``kflow run orchestrator|processor|all``: run the runtime services in the foreground."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import typer

from kflow.bus.admin import TopicAdminError, create_topics
from kflow.bus.errors import BusError, FatalClientError
from kflow.bus.topics import task_topic_spec, topic_names
from kflow.cli.broker import require_broker
from kflow.cli.definitions import publish
from kflow.core.definition import BUILTIN_TYPES, load_definition
from kflow.examples import Example, example_names, find_example
from kflow.observability.health import HEALTH, STARTUP, serve_health
from kflow.observability.lag import LagRefresher
from kflow.observability.logging import configure_logging, default_format
from kflow.observability.queues import QueueWatch
from kflow.processor.registry import NodeRegistryError, load_node_modules, registry
from kflow.registry.topic import DefinitionFollower, RegistryError
from kflow.settings import Settings

run_app = typer.Typer(help="Run kflow services in the foreground.", no_args_is_help=True)


@run_app.callback()
def _tracing(ctx: typer.Context) -> None:
    """Every service traces when the standard OTEL_* variables name an exporter (ADR 0037)."""
    from kflow.observability.tracing import TracingConfigError, configure_from_env

    role = ctx.invoked_subcommand
    if role is None or role == "all":  # `run all` only starts the services, each traces itself
        return
    try:
        configure_from_env(role)
    except TracingConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


NodesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--nodes",
        help="module with @node functions to load, importable from the current directory "
        "(repeatable)",
    ),
]
ExampleOption = Annotated[
    str | None,
    typer.Option(
        "--example",
        help="a bundled example to run: registers its definition, loads its nodes and serves its "
        f"queues ({', '.join(example_names())})",
    ),
]


MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        help="serve /metrics, /healthz and /readyz on PORT (default: off)",
    ),
]
MetricsHostOption = Annotated[
    str | None,
    typer.Option(
        "--metrics-host",
        help="address of the metrics port [default: KFLOW_METRICS_HOST or 127.0.0.1; "
        "0.0.0.0 in containers]",
    ),
]
LogFormatOption = Annotated[
    str | None,
    typer.Option("--log-format", help="json or text (default: text on a terminal, json otherwise)"),
]


def configure_cli_logging(level: str, log_format: str | None = None) -> None:
    """``--log-level``/``--log-format`` of a service command (exit 2 naming a bad value)."""
    chosen = log_format or default_format(sys.stderr)
    if chosen not in ("json", "text"):
        typer.echo(f"error: --log-format must be json or text, got {chosen!r}", err=True)
        raise typer.Exit(2)
    try:
        configure_logging(level, json=chosen == "json", stream=sys.stderr)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


def _setup(level: str, log_format: str | None = None) -> Settings:
    configure_cli_logging(level, log_format)
    # `kill -USR1 <pid>` writes every thread's stack to stderr: what a stalled service waits on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return require_broker(timeout_s=5.0)


def start_health_server(port: int | None, host: str | None, component: str) -> None:
    """Serve /metrics, /healthz and /readyz on ``host:port`` (nothing when ``port`` is None).

    Called before the service connects: /healthz answers at once, /readyz says ``starting``
    until the service reports its dependencies.
    """
    HEALTH.component = component
    HEALTH.report(STARTUP, False, "starting")
    if port is None:
        return
    from kflow.settings import get_settings

    address = host or get_settings().metrics_host
    try:
        serve_health(port, address)
    except OSError as e:
        typer.echo(
            f"error: cannot serve metrics on {address}:{port}: {e}; pick a free --metrics-port "
            "or a local address for --metrics-host",
            err=True,
        )
        raise typer.Exit(1) from e


def _started(port: int | None, settings: Settings, group_prefix: str) -> None:
    """The service is built: clear ``startup`` and keep its consumer group's lag fresh."""
    HEALTH.report(STARTUP, True)
    if port is not None:
        LagRefresher(settings.kafka_bootstrap, group_prefix).start()


ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="write cProfile stats to this file on exit")
]


FATAL_EXIT = 3
"""Exit code of a service whose Kafka client failed for good (a supervisor restarts it)."""


def _run_service(service: object, profile: str | None) -> None:
    """Run ``service.run()``, under cProfile when asked (for bench/ investigations).

    A fatal Kafka client error ends the process with :data:`FATAL_EXIT` (never a silent
    idle process): a new process gets new clients.
    """
    exit_on_fatal(lambda: _profiled(service, profile))


def exit_on_fatal(run: Callable[[], object]) -> None:
    """``run()``; a :class:`FatalClientError` fails /healthz and exits with FATAL_EXIT."""
    try:
        run()
    except FatalClientError as e:
        HEALTH.fail(str(e))
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(FATAL_EXIT) from e


def _profiled(service: object, profile: str | None) -> None:
    if profile is None:
        service.run()  # type: ignore[attr-defined]
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(service.run)  # type: ignore[attr-defined]
    finally:
        profiler.dump_stats(profile)


def _on_stop_signals(stop: object) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.stop()  # type: ignore[attr-defined]

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@run_app.command("orchestrator")
def orchestrator(
    instance: Annotated[
        str, typer.Option(help="stable slot id; a restart with the same id fences the old one")
    ] = "orchestrator-0",
    max_batch_ms: Annotated[int, typer.Option(min=1, help="longest wait to fill a batch")] = 5,
    log_level: Annotated[str, typer.Option(help="logging level")] = "warning",
    log_format: LogFormatOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = None,
    profile: ProfileOption = None,
) -> None:
    """Run one orchestrator (consumes commands and results, writes events and tasks).

    Example: kflow run orchestrator --instance orchestrator-1
    """
    from kflow.orchestrator.service import OrchestratorConfig, OrchestratorService

    settings = _setup(log_level, log_format)
    start_health_server(metrics_port, metrics_host, "orchestrator")
    try:
        service = OrchestratorService(
            OrchestratorConfig(
                bootstrap=settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                instance_id=instance,
                partitions=settings.partitions,
                max_batch_ms=max_batch_ms,
                max_payload_bytes=settings.max_payload_bytes,
                closed_retention_ms=settings.closed_retention_ms,
                retry_window_ms=settings.retry_window_ms,
                require_signatures=settings.require_signed_commands,
            )
        )
    except (RegistryError, BusError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    _started(metrics_port, settings, f"{settings.topic_prefix}.orchestrator")
    # tasks waiting on a queue no processor consumes: a warning and kflow_queue_unserved
    QueueWatch(settings.kafka_bootstrap, settings.topic_prefix).start()
    _on_stop_signals(service)
    _run_service(service, profile)


@run_app.command("processor")
def processor(
    queue: Annotated[str, typer.Option(help="task queue to consume")] = "default",
    concurrency: Annotated[int, typer.Option(min=1, max=10_000, help="steps at once")] = 16,
    nodes: NodesOption = None,
    instance: Annotated[
        str | None, typer.Option(help="stable slot id: a restart takes its partitions back at once")
    ] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "warning",
    log_format: LogFormatOption = None,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = None,
    profile: ProfileOption = None,
) -> None:
    """Run one node processor for a queue.

    Example: kflow run processor --queue default --nodes kflow.examples.docpipe.nodes
    """
    from kflow.processor.service import ProcessorConfig, ProcessorService

    settings = _setup(log_level, log_format)
    start_health_server(metrics_port, metrics_host, "processor")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as for `run all`'s children, started with `python -c`
    try:
        names = load_node_modules(nodes or [])
        service = ProcessorService(
            ProcessorConfig(
                bootstrap=settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                queue=queue,
                redis_url=settings.redis_url,
                concurrency=concurrency,
                instance_id=instance,
                redis_key_prefix=settings.topic_prefix,
                max_payload_bytes=settings.max_payload_bytes,
            ),
            registry,
        )
    except (NodeRegistryError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    except BusError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    logging.getLogger(__name__).info("queue %s, node types: %s", queue, ", ".join(names))
    _started(metrics_port, settings, service.config.group_id)
    _on_stop_signals(service)
    _run_service(service, profile)


def service_command(*args: str) -> list[str]:
    """The argv that runs ``kflow <args>`` with this interpreter."""
    return [sys.executable, "-c", "from kflow.cli.main import main; main()", *args]


@run_app.command("all")
def run_all(
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            help="queue to run a processor for (repeatable) [default: default and every queue "
            "of the applied definitions whose node types these processes register]",
        ),
    ] = None,
    nodes: NodesOption = None,
    example: ExampleOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="steps at once per processor")] = 16,
    orchestrators: Annotated[int, typer.Option(min=1, max=16, help="orchestrator processes")] = 1,
    log_level: Annotated[str, typer.Option(help="logging level")] = "warning",
    log_format: LogFormatOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65000,
            help="first /metrics port: orchestrators get PORT, PORT+1, ..., then one per "
            "processor (default: off)",
        ),
    ] = None,
    metrics_host: MetricsHostOption = None,
) -> None:
    """Start orchestrator(s) and one processor per queue as subprocesses; Ctrl-C stops them all.

    Without --queue it serves `default` and every queue the applied definitions use (a node's
    queue is its `queue`, else its type) whose node types the built-ins and --nodes modules
    register; a queue of node code it lacks is named and left to that code's processor.

    Example: kflow run all --queue default --nodes kflow.examples.docpipe.nodes --metrics-port 9101

    Example: kflow run all --example docpipe
    """
    bundled = _find_example(example) if example is not None else None
    settings = _setup(log_level, log_format)
    queues, modules = list(queue or []), list(nodes or [])
    if bundled is not None:
        definition = load_definition(bundled.definition)
        publish(settings, definition, actor="kflow run all")
        modules.append(bundled.nodes_module)
        queues += [q for q in definition.task_queues if q not in queues]
    needed = _applied_queues(settings)
    if queue is None:
        known = _known_node_types(modules)
        servable = []
        for q, types in needed.items():
            missing = sorted(types - known)
            if not missing:
                servable.append(q)
            elif q not in queues:
                # A processor without a node's code would share the queue's partitions with the
                # processor that has it and fail the steps it is assigned.
                typer.echo(
                    f"warning: queue {q!r} of the applied definitions is not served: no --nodes "
                    f"module registers node type {', '.join(missing)} (start "
                    f"`kflow run processor --queue {q} --nodes MODULE` where that code lives)",
                    err=True,
                )
        queues += [q for q in ("default", *servable) if q not in queues]
    else:
        for q in needed:
            if q not in queues:
                typer.echo(
                    f"warning: queue {q!r} of the applied definitions is not served "
                    f"(add --queue {q}, or leave out --queue to serve them all)",
                    err=True,
                )
    # Every applied queue's topic, served here or not: another team's processor starts on it.
    _create_task_topics(settings, [*queues, *(q for q in needed if q not in queues)])
    shared = ["--log-level", log_level, "--log-format", log_format or default_format(sys.stderr)]
    if metrics_host is not None:
        shared += ["--metrics-host", metrics_host]
    ports = iter(range(metrics_port, 65536)) if metrics_port is not None else None

    def port_args() -> list[str]:
        return [] if ports is None else ["--metrics-port", str(next(ports))]

    commands = [
        service_command(
            "run", "orchestrator", "--instance", f"orchestrator-{i}", *shared, *port_args()
        )
        for i in range(orchestrators)
    ]
    node_args = [arg for module in modules for arg in ("--nodes", module)]
    for q in queues:
        commands.append(
            service_command(
                "run",
                "processor",
                "--queue",
                q,
                "--concurrency",
                str(concurrency),
                *shared,
                *port_args(),
                *node_args,
            )
        )
    children = [subprocess.Popen(cmd, env=os.environ.copy()) for cmd in commands]
    typer.echo(
        f"started {len(children)} processes (pids {' '.join(str(c.pid) for c in children)}) "
        f"serving queues {', '.join(queues)}; Ctrl-C stops them"
    )
    _note_missing_key(settings)
    stopping = False

    def stop_all(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        stop_children(children)
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        typer.echo(f"error: a service exited with code {failed[0].returncode}", err=True)
        raise typer.Exit(1)


def _note_missing_key(settings: Settings) -> None:
    """The orchestrators refuse unsigned commands (ADR 0061): say now, once, when this
    shell has no key to send them with, rather than at the first `kflow start`."""
    from kflow.bus.credentials import command_signer
    from kflow.core.errors import KflowError

    try:
        command_signer(settings, "every command (kflow start, kflow.Client, ...)")
    except KflowError as e:  # no key, or a bad one: each sender says it again
        typer.echo(f"note: {e}", err=True)


def _create_task_topics(settings: Settings, queues: list[str]) -> None:
    """The served queues' task topics, so processors subscribe to topics that exist."""
    names = topic_names(settings.topic_prefix)
    specs = [task_topic_spec(names, q, settings.partitions) for q in queues]
    try:
        create_topics(settings.kafka_bootstrap, specs)
    except (TopicAdminError, ValueError) as e:
        typer.echo(f"error: cannot create the task topics of {', '.join(queues)}: {e}", err=True)
        raise typer.Exit(1) from e


def _known_node_types(modules: list[str]) -> set[str]:
    """The node types a processor started with ``--nodes modules`` registers."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return set(load_node_modules(modules))
    except NodeRegistryError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


def _applied_queues(settings: Settings) -> dict[str, set[str]]:
    """Every task queue a registered definition (any version) sends steps to, sorted, with the
    node types it carries."""
    try:
        follower = DefinitionFollower(settings.kafka_bootstrap, settings.topic_prefix)
        try:
            follower.catch_up()
        finally:
            follower.close()
    except RegistryError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    queues: dict[str, set[str]] = {}
    for definition in follower.store.all():
        for n in definition.nodes:
            if n.type not in BUILTIN_TYPES:
                queues.setdefault(n.task_queue, set()).add(n.type)
    return dict(sorted(queues.items()))


def _find_example(name: str) -> Example:
    bundled = find_example(name)
    if bundled is None:
        raise typer.BadParameter(
            f"no bundled example {name!r}; available: {', '.join(example_names())}",
            param_hint="--example",
        )
    return bundled


def stop_children(children: list[subprocess.Popen[bytes]], timeout_s: float = 20.0) -> None:
    """SIGTERM every child, wait, then SIGKILL the ones still running."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def register(app: typer.Typer) -> None:
    """Add ``kflow run``."""
    app.add_typer(run_app, name="run")
