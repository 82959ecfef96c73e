"""``kflow retry``, ``kflow bulk`` and ``kflow dlq`` against a running kflow (issue 15)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from click.testing import Result
from confluent_kafka import Producer
from typer.testing import CliRunner

from kflow.bus.contracts import EnvelopeMeta, default_contracts, encode_input
from kflow.bus.dead_letter import DeadLetter, encode_dead_letter
from kflow.bus.signing import Signer
from kflow.cli.main import _register, app
from kflow.core.inputs import StartWorkflow
from kflow.settings import get_settings
from tests.conftest import SESSION_KEY
from tests.console.conftest import APPROVAL, QUICK, Console
from tests.console.test_browser_actions import events_of, fixable

pytestmark = pytest.mark.integration
_register()
_runner = CliRunner()


class _InThread:
    """``CliRunner.invoke`` in a thread of its own: Playwright's sync API keeps an event
    loop running in the test thread once a browser test ran, and the CLI uses asyncio.run."""

    def invoke(self, app: Any, args: list[str]) -> Result:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(_runner.invoke, app, args).result()


runner = _InThread()


@pytest.fixture
def cli(console: Console, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    s = console.readside.settings
    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", s.topic_prefix)
    monkeypatch.setenv("KFLOW_DATABASE_URL", s.database_url)
    monkeypatch.setenv("KFLOW_DB_SCHEMA", s.db_schema)
    get_settings.cache_clear()
    yield console
    get_settings.cache_clear()


def test_retry_one_run_then_a_refusal_names_the_reason(cli: Console) -> None:
    prefix = cli.runtime.redis_prefix
    cli.define(fixable(prefix))
    workflow_id = cli.start(cli.key("default", "write"), "fixable")
    cli.wait_status(workflow_id, "failed")
    redis.Redis.from_url(cli.runtime.settings.redis_url).set(f"{prefix}fixed", 1)
    result = runner.invoke(app, ["retry", workflow_id, "--reason", "fixed", "--wait"])
    assert result.exit_code == 0, result.output
    assert f"retried {workflow_id} (was failed): b#2" in result.output
    assert "WorkflowCompleted" in result.output
    again = runner.invoke(app, ["retry", workflow_id])
    assert again.exit_code == 1
    assert "refused (not_retryable)" in again.output
    assert "Traceback" not in again.output


def test_bulk_cancel_by_filter_is_one_batch_and_idempotent(cli: Console) -> None:
    cli.define(APPROVAL)
    writer = cli.key("default", "write")
    waiting = [cli.start(writer, "approve", {"amount": i}) for i in range(2)]
    for workflow_id in waiting:
        cli.wait_step(workflow_id, "review", "waiting")
    args = ["bulk", "cancel", "--filter", "status=running", "--filter", "name=approve",
            "--reason", "cleanup"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "applied 2" in first.output
    batch_line = first.output.strip().splitlines()[-1]
    second = runner.invoke(app, args)  # same request: the same batch, nothing sent again
    assert second.output.strip().splitlines()[-1] == batch_line
    for workflow_id in waiting:
        assert cli.status(workflow_id) == "cancelled"
        assert events_of(cli, workflow_id, "WorkflowCancelled") == 1
    bad = runner.invoke(app, ["bulk", "cancel", "--filter", "colour=red"])
    assert bad.exit_code == 2
    assert "--filter 'colour=red'" in bad.output


def test_dlq_list_show_redrive_and_discard(cli: Console) -> None:
    cli.define(QUICK)
    names = cli.runtime.prefix
    codec = default_contracts().codec
    producer = Producer({"bootstrap.servers": cli.readside.settings.kafka_bootstrap})
    for i in range(2):
        start = StartWorkflow(workflow_id=f"wf-cli-{i}", name="quick", version=0)
        original = encode_input(start, EnvelopeMeta(event_id=f"e-{i}", occurred_at=1))
        signed = Signer.from_token(SESSION_KEY).headers(f"wf-cli-{i}", original)
        letter = DeadLetter(f"wf-cli-{i}", original, f"{names}.commands", 0, i,
                            "handler_error", "Boom", "try later", 1_000 + i, signed)  # fmt: skip
        producer.produce(f"{names}.dlq", key=f"wf-cli-{i}", value=encode_dead_letter(letter, codec))
    assert producer.flush(30) == 0

    listed = runner.invoke(app, ["dlq", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count('"action": null') == 2
    shown = runner.invoke(app, ["dlq", "show", "0:0"])
    assert '"type": "StartWorkflow"' in shown.output
    redriven = runner.invoke(app, ["dlq", "redrive", "0:0"])
    assert redriven.exit_code == 0, redriven.output
    assert "0:0 redriven" in redriven.output
    twice = runner.invoke(app, ["dlq", "redrive", "0:0"])
    assert twice.exit_code == 1 and "0:0 already_redriven" in twice.output
    cli.wait_status("wf-cli-0", "completed")
    no_reason = runner.invoke(app, ["dlq", "discard", "0:1"])
    assert no_reason.exit_code == 2 and "reason" in no_reason.output
    discarded = runner.invoke(app, ["dlq", "discard", "0:1", "--reason", "test data"])
    assert discarded.exit_code == 0 and "0:1 discarded" in discarded.output
    assert cli.status("wf-cli-1") is None
    assert events_of(cli, "wf-cli-0", "WorkflowStarted") == 1
