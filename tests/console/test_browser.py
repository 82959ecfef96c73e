"""The console in a real headless Chromium against a real kflow (Kafka, PostgreSQL, Redis)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.conftest import APPROVAL, QUICK, Console, sign_in

pytestmark = pytest.mark.integration
Shot = Callable[[Page, str], Path]


def test_a_run_appears_live_and_is_approved_from_its_page(
    console: Console, page: Page, shot: Shot
) -> None:
    console.define(APPROVAL)
    writer = console.key("acme", "write")
    sign_in(page, console.url, writer)
    expect(page.locator("#live-state")).to_contain_text("Live")
    page.evaluate("window.__not_reloaded = true")

    workflow_id = console.start(writer, "approve", {"amount": 10})
    row = page.locator(f"[id='wf-{workflow_id}']")
    expect(row).to_be_visible()  # arrived over the list stream
    assert page.evaluate("window.__not_reloaded") is True
    expect(row.locator(".badge")).to_have_text("running")
    shot(page, "list")

    row.locator("a").click()
    page.wait_for_url(f"**/ui/workflows/{workflow_id}")
    node = "#dag g.node[data-node={}]".format
    expect(page.locator(node("review"))).to_have_attribute("data-status", "waiting")
    assert page.locator("#dag g.node").count() == 3
    assert page.locator(node("prepare")).get_attribute("data-status") == "succeeded"
    assert page.locator(node("pay")).get_attribute("data-status") == "pending"
    expect(page.locator("#signal-name")).to_have_value("review")
    shot(page, "waiting")

    page.fill("#signal-payload", '{"approved": true, "by": "ana"}')
    page.click("#btn-signal")
    expect(page.locator("#outcome-result")).to_have_attribute("data-result", "accepted")
    expect(page.locator("#outcome-result")).to_contain_text("WorkflowSignalled")
    expect(page.locator("#wf-status")).to_have_text("completed")  # live, no reload
    expect(page.locator(node("pay"))).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#events tr[data-type=WorkflowCompleted]")).to_have_count(1)
    assert console.status(workflow_id) == "completed"
    shot(page, "completed")


def test_cancel_from_the_page_shows_the_resulting_event(
    console: Console, page: Page, shot: Shot
) -> None:
    console.define(APPROVAL)
    writer = console.key("acme", "write")
    workflow_id = console.start(writer, "approve", {"amount": 3})
    console.wait_step(workflow_id, "review", "waiting")
    sign_in(page, console.url, writer)
    page.goto(f"{console.url}/ui/workflows/{workflow_id}")
    page.fill("form:has(#btn-cancel) input[name=reason]", "not needed")
    page.click("#btn-cancel")
    expect(page.locator("#outcome-result")).to_have_attribute("data-result", "accepted")
    expect(page.locator("#outcome-result")).to_contain_text("WorkflowCancelled")
    expect(page.locator("#wf-status")).to_have_text("cancelled")
    expect(page.locator("#dag g.node[data-node=review]")).to_have_attribute(
        "data-status", "cancelled"
    )
    assert console.status(workflow_id) == "cancelled"
    shot(page, "cancelled")

    # a command the orchestrator refuses shows the reason it gave
    page.click("#btn-resume")
    expect(page.locator("#outcome-result")).to_have_attribute("data-result", "rejected")
    shot(page, "refused")


def test_a_read_only_key_sees_no_buttons_and_is_refused_anyway(
    console: Console, page: Page, shot: Shot
) -> None:
    console.define(APPROVAL)
    workflow_id = console.start(console.key("acme", "write"), "approve", {"amount": 1})
    console.wait_step(workflow_id, "review", "waiting")
    sign_in(page, console.url, console.key("acme", "read"))
    page.goto(f"{console.url}/ui/workflows/{workflow_id}")
    expect(page.locator("#read-only")).to_be_visible()
    for button in ("#btn-pause", "#btn-resume", "#btn-cancel", "#btn-signal"):
        assert page.locator(button).count() == 0
    assert page.locator("form[action$='/cancel']").count() == 0
    shot(page, "read-only")

    # forge the post the page does not offer: the server refuses it, nothing is published
    headers = page.locator("body").get_attribute("hx-headers") or ""
    csrf = headers.split('"')[3]
    answer = page.request.post(
        f"{console.url}/ui/workflows/{workflow_id}/cancel",
        form={"csrf": csrf, "confirmed": "yes", "reason": "forged"},
    )
    assert answer.status == 403
    assert "lacks the &#39;write&#39; scope" in answer.text()
    assert console.status(workflow_id) == "running"

    # the approval has waited past a 1 s threshold: Operations lists it as stuck
    page.wait_for_timeout(1200)
    page.goto(f"{console.url}/ui/operations?stuck_after_s=1")
    stuck = page.locator(f"#stuck tr:has-text('{workflow_id}')")
    expect(stuck).to_contain_text("step review awaiting a signal")
    shot(page, "stuck")


def test_another_tenants_workflows_never_appear(console: Console, page: Page, shot: Shot) -> None:
    console.define(QUICK)
    console.define(APPROVAL)
    theirs = console.start(console.key("acme", "write"), "approve", {"amount": 1})
    console.wait_status(theirs, "running")
    mine_key = console.key("globex", "admin")
    sign_in(page, console.url, mine_key)
    expect(page.locator("#live-state")).to_contain_text("Live")
    # while the other tenant starts more, only this tenant's new run appears
    theirs_later = console.start(console.key("acme", "write"), "quick")
    mine = console.start(mine_key, "quick")
    expect(page.locator(f"[id='wf-{mine}']")).to_be_visible()
    console.wait_status(theirs_later, "completed")
    console.wait_status(mine, "completed")
    expect(page.locator(f"[id='wf-{mine}'] .badge")).to_have_text("completed")
    body = page.content()
    assert theirs not in body and theirs_later not in body
    expect(page.locator("#counts")).to_contain_text("completed 1")
    shot(page, "list")

    for path in (
        f"/ui/workflows/{theirs}",
        f"/ui/workflows/{theirs}/part",
        f"/ui/workflows/{theirs}/stream",
        f"/ui/workflows/{theirs}/value?which=input",
    ):
        answer = page.request.get(f"{console.url}{path}")
        assert answer.status == 404, path
        assert "acme" not in answer.text()
    page.goto(f"{console.url}/ui/workflows?q={theirs[:8]}")
    expect(page.locator("#wf-rows tr")).to_have_count(0)
    page.goto(f"{console.url}/ui/operations?stuck_after_s=1")
    assert theirs not in page.content()
    shot(page, "operations")


def test_a_poisoned_record_shows_on_the_dead_letter_page(
    console: Console, page: Page, shot: Shot
) -> None:
    from kflow.bus.contracts import EnvelopeMeta, encode_input
    from kflow.core.inputs import CancelWorkflow
    from tests.kafka_helpers import produce

    events_topic = f"{console.runtime.prefix}.events"
    misplaced = encode_input(
        CancelWorkflow(workflow_id="wf-misplaced", reason="x"),
        EnvelopeMeta(event_id="e-1", occurred_at=1, tenant="acme", actor="someone"),
    )
    produce(
        console.readside.settings.kafka_bootstrap,
        events_topic,
        [(b"wf-garbage", b"\x00not an avro record"), (b"wf-misplaced", misplaced)],
    )
    sign_in(page, console.url, console.key("acme", "admin"))
    page.goto(f"{console.url}/ui/dead-letters")
    rows = page.locator("#dlq tbody tr[data-source]")
    for _ in range(100):  # both projectors dead-letter both records; the page reads the topic
        if rows.count() >= 4:
            break
        page.wait_for_timeout(300)
        page.reload()
    assert rows.count() == 4
    garbage = page.locator("#dlq tr:has-text('wf-garbage')").first
    expect(garbage).to_contain_text(f"{events_topic} [")
    expect(garbage).to_contain_text("not decodable")
    decoded = page.locator("#dlq tr:has-text('wf-misplaced')").first
    expect(decoded).to_contain_text("wrong_type")
    decoded.locator("summary").click()
    expect(decoded.locator("pre")).to_contain_text('"reason": "x"')
    shot(page, "dlq")

    # another tenant's admin sees the undecodable record but not acme's decoded one
    page.context.clear_cookies()
    sign_in(page, console.url, console.key("globex", "admin"))
    page.goto(f"{console.url}/ui/dead-letters")
    expect(page.locator("#dlq tr:has-text('wf-garbage')")).to_have_count(2)
    expect(page.locator("#dlq tr:has-text('wf-misplaced')")).to_have_count(0)
    # and a key below admin cannot open the page at all
    page.context.clear_cookies()
    sign_in(page, console.url, console.key("acme", "write"))
    assert page.request.get(f"{console.url}/ui/dead-letters").status == 403


def test_the_list_renders_and_filters_without_javascript(
    console: Console, browser: Browser, shot: Shot
) -> None:
    console.define(QUICK)
    console.define(APPROVAL)
    writer = console.key("acme", "write")
    done = console.start(writer, "quick")
    waiting = console.start(writer, "approve", {"amount": 2})
    console.wait_status(done, "completed")
    console.wait_step(waiting, "review", "waiting")
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        sign_in(page, console.url, writer)
        expect(page.locator(f"[id='wf-{done}']")).to_be_visible()
        expect(page.locator(f"[id='wf-{waiting}']")).to_be_visible()
        expect(page.locator("#live-state")).to_contain_text("need JavaScript")
        page.select_option("select[name=status]", "completed")
        page.click(".filters button[type=submit]")
        expect(page.locator("#wf-rows tr")).to_have_count(1)
        expect(page.locator(f"[id='wf-{done}']")).to_be_visible()
        shot(page, "no-js-list")
        # a command without JavaScript asks on a confirmation page first
        page.goto(f"{console.url}/ui/workflows/{waiting}")
        page.click("#btn-pause")
        expect(page.locator("h1")).to_contain_text("Pause workflow")
        page.click("#confirm")
        expect(page.locator("#outcome-result")).to_have_attribute("data-result", "accepted")
        shot(page, "no-js-paused")
        console.wait_status(waiting, "paused")
    finally:
        ctx.close()


def test_docs_and_pages_load_no_asset_from_another_host(
    console: Console, page: Page, shot: Shot
) -> None:
    console.define(APPROVAL)
    outside: list[str] = []
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(console.url)
            else (outside.append(route.request.url), route.abort())[1]
        ),
    )
    page.goto(f"{console.url}/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.locator(".swagger-ui")).to_contain_text("/workflows")
    shot(page, "swagger")
    assert outside == []
    page.goto(f"{console.url}/redoc")
    expect(page.locator("redoc, #redoc-container, .redoc-wrap").first).to_contain_text("workflows")
    # ReDoc's "API docs by Redocly" badge is an <img> it hides when it cannot load (it may be
    # requested any time after the page renders): the only outside request allowed
    badge = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    sign_in(page, console.url, console.key("acme", "read"))
    page.goto(f"{console.url}/ui/definitions?show=approve@1")
    expect(page.locator("#definitions tr[data-key='approve@1']")).to_be_visible()
    expect(page.locator("svg.dag g.node")).to_have_count(3)
    page.goto(f"{console.url}/ui/operations")
    expect(page.locator("#instances")).to_contain_text(".orchestrator")
    expect(page.locator("#lag")).to_contain_text(".projector.postgres")
    shot(page, "operations")
    assert [url for url in outside if url != badge] == []


def test_revoking_the_key_sends_open_pages_to_sign_in(
    console: Console, page: Page, shot: Shot
) -> None:
    """The list's live stream ends with ``unauthorized`` (ADR 0047); the page then reloads and
    the server sends it to the sign-in form, without anyone clicking."""
    from kflow.api.apikeys import parse_key_id, revoke_key

    console.define(QUICK)
    reader = console.key("acme", "read")
    sign_in(page, console.url, reader)
    expect(page.locator("#live-state")).to_contain_text("Live")
    key_id = parse_key_id(reader)
    assert key_id is not None
    with console.readside.connect() as conn:
        assert revoke_key(conn, key_id)
    page.wait_for_url("**/ui/login**")
    expect(page.locator("input[name=api_key]")).to_be_visible()
    shot(page, "signed-out")
