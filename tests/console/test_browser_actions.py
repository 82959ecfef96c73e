"""Retry, dead-letter redrive and bulk actions in a real headless Chromium (issue 15)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka import Producer
from playwright.sync_api import Page, expect

from kflow.bus.contracts import EnvelopeMeta, default_contracts, encode_input
from kflow.bus.dead_letter import DeadLetter, encode_dead_letter
from kflow.bus.signing import Signer
from kflow.core.inputs import StartWorkflow
from tests.conftest import SESSION_KEY
from tests.console.conftest import APPROVAL, QUICK, Console, sign_in, task, wait_seconds

pytestmark = pytest.mark.integration
Shot = Callable[[Page, str], Path]


def fixable(redis_prefix: str) -> dict[str, object]:
    io = {"redis_prefix": redis_prefix}
    return {
        "name": "fixable",
        "nodes": [
            task("a", "test.count", input=io),
            task("b", "test.fail_until_fixed", depends_on=["a"], input=io),
            task("c", "test.count", depends_on=["b"], input=io),
        ],
    }


def events_of(console: Console, workflow_id: str, type_: str) -> int:
    with console.readside.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE workflow_id = %s AND type = %s",
            (workflow_id, type_),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_retry_a_failed_run_from_its_page_without_rerunning_completed_steps(
    console: Console, page: Page, shot: Shot
) -> None:
    prefix = console.runtime.redis_prefix
    console.define(fixable(prefix))
    writer = console.key("acme", "write")
    workflow_id = console.start(writer, "fixable")
    console.wait_status(workflow_id, "failed")
    sign_in(page, console.url, writer)
    page.goto(f"{console.url}/ui/workflows/{workflow_id}")
    node = "#dag g.node[data-node={}]".format
    expect(page.locator(node("b"))).to_have_attribute("data-status", "failed")
    assert page.locator(node("a")).get_attribute("data-status") == "succeeded"
    for button in ("#btn-pause", "#btn-resume", "#btn-cancel"):
        assert page.locator(button).count() == 0
    shot(page, "failed")

    r = redis.Redis.from_url(console.runtime.settings.redis_url)
    r.set(f"{prefix}fixed", 1)  # the operator fixed what made b fail
    page.fill("form:has(#btn-retry) input[name=reason]", "fixed the config")
    page.click("#btn-retry")
    expect(page.locator("#outcome-result")).to_have_attribute("data-result", "accepted")
    expect(page.locator("#outcome-result")).to_contain_text("WorkflowRetried")
    expect(page.locator("#wf-status")).to_have_text("completed")  # live again, no reload
    expect(page.locator(node("b"))).to_have_attribute("data-status", "succeeded")
    expect(page.locator(node("c"))).to_have_attribute("data-status", "succeeded")
    assert console.status(workflow_id) == "completed"
    effects = r.hgetall(f"{prefix}effects")
    assert int(effects[f"{workflow_id}/a".encode()]) == 1  # completed step not run again
    assert int(effects[f"{workflow_id}/b".encode()]) == 2
    assert events_of(console, workflow_id, "StepReopened") == 1
    shot(page, "retried")


def test_a_poisoned_record_is_redriven_from_the_dead_letter_page_once(
    console: Console, page: Page, shot: Shot
) -> None:
    console.define(QUICK)
    # A command signed by the session's key (tenant default): a redriven record gets its
    # bytes and its headers back, the signature included (ADR 0083).
    admin = console.key("default", "admin")
    names = f"{console.runtime.prefix}"
    workflow_id = "wf-from-the-dlq"
    start = StartWorkflow(workflow_id=workflow_id, name="quick", version=0)
    original = encode_input(start, EnvelopeMeta(event_id="e-dlq-1", occurred_at=1, actor="svc"))
    signed = Signer.from_token(SESSION_KEY).headers(workflow_id, original)
    letter = DeadLetter(workflow_id, original, f"{names}.commands", 0, 42, "handler_error",
                        "RegistryDown", "definitions were not readable", 1_000,
                        signed)  # fmt: skip
    producer = Producer({"bootstrap.servers": console.readside.settings.kafka_bootstrap})
    producer.produce(
        f"{names}.dlq", key=workflow_id, value=encode_dead_letter(letter, default_contracts().codec)
    )
    assert producer.flush(30) == 0

    sign_in(page, console.url, admin)
    page.goto(f"{console.url}/ui/dead-letters")
    row = page.locator(f"#dlq tr[data-letter]:has-text('{workflow_id}')")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("StartWorkflow")
    letter_id = row.get_attribute("data-letter")
    row.locator("input[type=checkbox]").check()
    shot(page, "dlq-selected")
    page.click("#btn-redrive")
    result = page.locator(f"#dlq-result li[data-letter='{letter_id}']")
    expect(result).to_have_attribute("data-outcome", "redriven")
    console.wait_status(workflow_id, "completed")
    page.goto(f"{console.url}/ui/dead-letters")
    expect(row).to_have_attribute("data-action", "redriven")
    assert row.locator("input[type=checkbox]").count() == 0
    shot(page, "dlq-redriven")

    # redriving again (the JSON API, as a script would) does not start the work twice
    again = httpx.post(
        f"{console.url}/dlq/redrive",
        json={"letters": [letter_id]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert again.status_code == 200, again.text
    assert again.json()[0]["outcome"] == "already_redriven"
    assert events_of(console, workflow_id, "WorkflowStarted") == 1
    assert events_of(console, workflow_id, "DuplicateStartIgnored") == 0


def test_cancel_three_workflows_in_one_bulk_action(
    console: Console, page: Page, shot: Shot
) -> None:
    console.define(APPROVAL)
    writer = console.key("acme", "write")
    chosen = [console.start(writer, "approve", {"amount": i}) for i in range(3)]
    spared = console.start(writer, "approve", {"amount": 9})
    for workflow_id in [*chosen, spared]:
        console.wait_step(workflow_id, "review", "waiting")
    sign_in(page, console.url, writer)
    for workflow_id in chosen:
        page.locator(f"[id='wf-{workflow_id}'] input.pick").check()
    page.select_option("#bulk-action", "cancel")
    page.fill("#bulk-form input[name=reason]", "batch test")
    shot(page, "bulk-selected")
    page.click("#btn-bulk")
    expect(page.locator("h1")).to_contain_text("Cancel 3 workflow(s)?")
    page.click("#confirm")
    page.wait_for_url("**/ui/batches/*")
    expect(page.locator("#batch-state")).to_have_text("done")  # refreshes itself until done
    rows = page.locator("#batch-items tr[data-state=applied]")
    expect(rows).to_have_count(3)
    for workflow_id in chosen:
        console.wait_status(workflow_id, "cancelled")
    assert console.status(spared) == "running"
    shot(page, "bulk-done")

    # the same request again is the same batch: nothing is published twice
    batch_url = page.url
    page.goto(f"{console.url}/ui/workflows")
    for workflow_id in chosen:
        page.locator(f"[id='wf-{workflow_id}'] input.pick").check()
    page.select_option("#bulk-action", "cancel")
    page.fill("#bulk-form input[name=reason]", "batch test")
    page.click("#btn-bulk")
    page.click("#confirm")
    page.wait_for_url(batch_url)
    expect(page.locator("#batch-items tr[data-state=applied]")).to_have_count(3)
    for workflow_id in chosen:
        assert events_of(console, workflow_id, "WorkflowCancelled") == 1
        assert events_of(console, workflow_id, "InputRejected") == 0


def test_retry_everything_failed_by_filter_through_the_json_api(console: Console) -> None:
    prefix = console.runtime.redis_prefix
    console.define(fixable(prefix))
    console.define(QUICK)
    writer = console.key("acme", "write")
    auth = {"Authorization": f"Bearer {writer}"}
    failed = [console.start(writer, "fixable") for _ in range(3)]
    fine = console.start(writer, "quick")
    for workflow_id in failed:
        console.wait_status(workflow_id, "failed")
    console.wait_status(fine, "completed")
    redis.Redis.from_url(console.runtime.settings.redis_url).set(f"{prefix}fixed", 1)
    body = {"action": "retry", "filter": {"status": "failed", "name": "fixable"}, "reason": "fix"}
    first = httpx.post(f"{console.url}/batches", json=body, headers=auth)
    assert first.status_code == 202, first.text
    batch = first.json()
    assert batch["total"] == 3
    assert sorted(i["workflow_id"] for i in batch["items"]) == sorted(failed)
    for workflow_id in failed:
        console.wait_status(workflow_id, "completed")

    def outcome() -> dict[str, object]:
        r = httpx.get(f"{console.url}/batches/{batch['batch_id']}", headers=auth)
        assert r.status_code == 200, r.text
        return dict(r.json())

    wait_seconds(lambda: bool(outcome()["done"]), "the batch's outcomes", 30)
    done = outcome()
    assert done["counts"] == {"applied": 3}
    assert {i["event"] for i in done["items"]} == {"WorkflowRetried"}  # type: ignore[union-attr]
    # resubmitted: the same batch, the frozen selection, no second retry
    again = httpx.post(f"{console.url}/batches", json=body, headers=auth)
    assert again.json()["batch_id"] == batch["batch_id"]
    for workflow_id in failed:
        assert events_of(console, workflow_id, "WorkflowRetried") == 1
    refused = httpx.post(f"{console.url}/batches", json={"action": "retry"}, headers=auth)
    assert refused.status_code == 422
    assert "workflow_ids or filter" in refused.text
