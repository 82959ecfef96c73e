"""A run too large for SVG: its DAG and timeline are drawn on canvases from compact data."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import sign_in
from tests.readside.conftest import ApiServer, ReadSide
from tests.readside.workload import project, run_workflow, wide_definition

pytestmark = pytest.mark.integration
STEPS = 400  # above the canvas threshold (300), small enough to fold in a second or two


def test_a_large_run_is_drawn_on_canvases_with_tooltips_and_a_level_summary(
    readside: ReadSide, api: ApiServer, make_key: Callable[..., str], page: Page,
    shot: Callable[[Page, str], Path],
) -> None:  # fmt: skip
    wlog = run_workflow(
        "wide-run", int(time.time() * 1000) - 60_000, tenant="acme",
        definition=wide_definition(STEPS),
    )  # fmt: skip
    project(readside.dsn, readside.schema, wlog)
    token = make_key("acme", "read")
    url = f"{api.url}/ui/workflows/{wlog.workflow_id}"

    # without JavaScript: no SVG per node, the per-level summary is in the server's HTML
    with httpx.Client() as client:
        r = client.post(f"{api.url}/ui/login", data={"api_key": token, "next": "/ui/workflows"})
        assert r.status_code == 303
        html = client.get(url).text
    assert 'id="dag-data"' in html and 'id="timeline-data"' in html
    assert 'class="node' not in html and "<rect" not in html
    assert "level 0: 20 steps — 20 succeeded" in html
    assert "level 19: 20 steps — 20 succeeded" in html

    sign_in(page, api.url, token)
    page.goto(url)
    for canvas in ("#dag-canvas", "#timeline-canvas"):
        expect(page.locator(f"{canvas}[data-drawn]")).to_have_count(1)
    nodes = page.evaluate("JSON.parse(document.getElementById('dag-data').textContent).nodes")
    assert len(nodes) == STEPS
    bars = page.evaluate("JSON.parse(document.getElementById('timeline-data').textContent).bars")
    assert len(bars) >= STEPS
    # pixels were drawn: the canvas is not blank
    for canvas in ("dag-canvas", "timeline-canvas"):
        drawn = page.evaluate(
            """(id) => { const c = document.getElementById(id);
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i]) n++; return n; }""",
            canvas,
        )
        assert drawn > 1000, canvas

    # hover a node: its name and status; click it: the step is selected
    first = page.locator("#dag-view")
    box = first.bounding_box()
    assert box is not None
    node_id, x, y = nodes[0][0], nodes[0][1], nodes[0][2]
    page.mouse.move(box["x"] + x + 20, box["y"] + y + 10)
    expect(page.locator("#canvas-tip")).to_contain_text(f"{node_id}: echo · succeeded")
    page.mouse.click(box["x"] + x + 20, box["y"] + y + 10)
    expect(first).to_have_attribute("data-selected", node_id)
    expect(page.locator("#dag-selected")).to_contain_text(node_id)
    expect(page.locator(f"#steps tr[data-step={node_id}]")).to_have_class("selected")

    # hover a timeline bar: its attempt and time
    page.locator("#timeline-view").scroll_into_view_if_needed()
    tl = page.locator("#timeline-view").bounding_box()
    assert tl is not None
    bx, by, bw = bars[0][0], bars[0][1], bars[0][2]
    page.mouse.move(tl["x"] + bx + bw / 2, tl["y"] + by + 6)
    expect(page.locator("#canvas-tip")).to_contain_text(" #1 run: ")
    shot(page, "large-run")
