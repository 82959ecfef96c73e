"""The processor parts without Kafka: registry, error mapping, offsets; the ledger on Redis."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pydantic
import pytest

from kflow.bus.records import ExecuteStep
from kflow.core.errors import ErrorClass, NeedsReview, PermanentError, TransientError
from kflow.processor.builtin_nodes import http_error_for_status
from kflow.processor.context import StepContext
from kflow.processor.executor import StepExecutor
from kflow.processor.failures import StepTimeout, classify
from kflow.processor.ledger import Outcome, RedisLedger
from kflow.processor.offsets import PartitionProgress
from kflow.processor.registry import NodeRegistry, NodeRegistryError, load_node_modules, registry


class Doc(pydantic.BaseModel):
    title: str


def test_decorator_registers_sync_and_async_nodes_with_models() -> None:
    nodes = NodeRegistry()

    @nodes.node("upper", input_model=Doc, output_model=Doc)
    def upper(doc: Doc) -> Doc:
        return Doc(title=doc.title.upper())

    @nodes.node()
    async def with_ctx(value: Any, ctx: StepContext) -> Any:
        return ctx.idempotency_key

    handler = nodes.get("upper")
    assert handler is not None and not handler.is_async and not handler.wants_context
    assert handler.dump_output(upper(handler.parse_input({"title": "a"}))) == {"title": "A"}
    second = nodes.get("with_ctx")
    assert second is not None and second.is_async and second.wants_context
    assert nodes.names() == ["upper", "with_ctx"]


def test_registry_refuses_a_second_function_under_one_name_and_bad_signatures() -> None:
    nodes = NodeRegistry()
    nodes.node("x")(lambda v: v)
    with pytest.raises(NodeRegistryError, match="already registered"):
        nodes.node("x")(lambda v: v)
    with pytest.raises(NodeRegistryError, match="must take"):
        nodes.node("three")(lambda a, b, c: a)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TransientError("x"), ErrorClass.TRANSIENT),
        (PermanentError("x"), ErrorClass.PERMANENT),
        (NeedsReview("x"), ErrorClass.NEEDS_REVIEW),
        (StepTimeout("x"), ErrorClass.TRANSIENT),
        (TimeoutError(), ErrorClass.TRANSIENT),
        (ConnectionResetError(), ErrorClass.TRANSIENT),
        (httpx.ConnectError("refused"), ErrorClass.TRANSIENT),
        (ValueError("bad"), ErrorClass.PERMANENT),
        (KeyError("k"), ErrorClass.PERMANENT),
        (RuntimeError("?"), ErrorClass.TRANSIENT),
    ],
)
def test_exceptions_map_to_error_classes(exc: Exception, expected: ErrorClass) -> None:
    failure = classify(exc)
    assert failure.error_class == expected
    assert failure.error_type == type(exc).__name__


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (429, TransientError),
        (503, TransientError),
        (504, TransientError),
        (400, PermanentError),
        (404, PermanentError),
        (501, PermanentError),
    ],
)
def test_http_status_mapping(status: int, expected: type[Exception] | None) -> None:
    error = http_error_for_status(status, "body")
    assert (error is None) if expected is None else isinstance(error, expected)


def test_commit_point_waits_for_the_oldest_task_in_flight() -> None:
    progress = PartitionProgress()
    for offset in (10, 11, 12):
        progress.started(offset)
    progress.finished(12)
    assert progress.to_commit() is None
    progress.finished(10)
    assert progress.to_commit() == 11
    assert progress.to_commit() == 11  # until the broker acknowledges it
    progress.acknowledged(11)
    assert progress.to_commit() is None
    progress.finished(11)
    assert progress.to_commit() == 13
    assert progress.in_flight == 0


def test_an_idle_partition_commits_the_position_past_transaction_markers() -> None:
    progress = PartitionProgress()
    progress.started(10)
    progress.caught_up(12)  # a task is in flight: the position says nothing about it
    assert progress.to_commit() is None
    progress.finished(10)
    assert progress.to_commit() == 11
    progress.caught_up(12)  # the marker after the task at 10
    assert progress.to_commit() == 12
    progress.caught_up(11)  # never backwards
    assert progress.to_commit() == 12


def task(node_type: str, attempt: int = 1, timeout_ms: int = 0, value: Any = None) -> ExecuteStep:
    return ExecuteStep(
        workflow_id="w",
        step_key="w/n",
        node_id="n",
        node_type=node_type,
        queue="default",
        attempt=attempt,
        input=value,
        timeout_ms=timeout_ms,
        idempotency_key=f"w/n#{attempt}",
        scheduled_at=0,
    )


@pytest.mark.integration
def test_ledger_returns_the_recorded_outcome_instead_of_running_again(
    redis_url: str, redis_prefix: str
) -> None:
    nodes = NodeRegistry()
    calls: list[str] = []

    @nodes.node("counted")
    def counted(value: Any, ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.idempotency_key)
        return {"n": len(calls)}

    @nodes.node("slow")
    async def slow(value: Any) -> None:
        await asyncio.sleep(5)

    async def scenario() -> None:
        ledger = RedisLedger.from_url(redis_url, redis_prefix.rstrip(":"), ttl_s=60)
        executor = StepExecutor(nodes, ledger, ThreadPoolExecutor(2), lambda t, d: None)
        try:
            first = await executor.execute(task("counted"))
            again = await executor.execute(task("counted"))
            next_attempt = await executor.execute(task("counted", attempt=2))
            assert (first.replayed, again.replayed, next_attempt.replayed) == (False, True, False)
            assert first.outcome == again.outcome == Outcome(output={"n": 1})
            assert calls == ["w/n#1", "w/n#2"]
            timed_out = await executor.execute(task("slow", attempt=5, timeout_ms=50))
            assert timed_out.outcome.error_type == "StepTimeout"
            unknown = await executor.execute(task("nope", attempt=3))
            assert unknown.outcome.error_class == ErrorClass.PERMANENT
            assert "not registered" in unknown.outcome.message
        finally:
            await ledger.close()

    asyncio.run(scenario())


@pytest.mark.integration
def test_concurrent_records_share_round_trips_and_the_first_outcome_wins(
    redis_url: str, redis_prefix: str
) -> None:
    async def scenario() -> None:
        ledger = RedisLedger.from_url(redis_url, redis_prefix.rstrip(":"), ttl_s=60)
        try:
            outcomes = await asyncio.gather(
                *(ledger.record(f"k{i % 10}", Outcome(output=i)) for i in range(40))
            )
            assert outcomes == [Outcome(output=i % 10) for i in range(40)]
            found = await asyncio.gather(*(ledger.lookup(f"k{i}") for i in range(12)))
            assert found == [Outcome(output=i) for i in range(10)] + [None, None]
        finally:
            await ledger.close()

    asyncio.run(scenario())


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        status = int(self.path.strip("/"))
        body = json.dumps({"key": self.headers.get("Idempotency-Key")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_http_node_sends_the_idempotency_key_and_maps_statuses(
    http_server: str, redis_url: str, redis_prefix: str
) -> None:
    load_node_modules([])

    async def scenario() -> list[Outcome]:
        ledger = RedisLedger.from_url(redis_url, redis_prefix.rstrip(":"), ttl_s=60)
        executor = StepExecutor(registry, ledger, ThreadPoolExecutor(2), lambda t, d: None)
        try:
            return [
                (
                    await executor.execute(
                        task(
                            "http",
                            attempt=n,
                            value={"url": f"{http_server}/{status}", "method": "POST", "json": {}},
                        )
                    )
                ).outcome
                for n, status in enumerate((200, 503, 404), start=1)
            ]
        finally:
            await ledger.close()

    ok, busy, missing = asyncio.run(scenario())
    assert ok.output is not None and ok.output.value["status"] == 200
    assert ok.output.value["body"] == {"key": "w/n#1"}
    assert busy.error_class == ErrorClass.TRANSIENT and "503" in busy.message
    assert missing.error_class == ErrorClass.PERMANENT and "404" in missing.message
