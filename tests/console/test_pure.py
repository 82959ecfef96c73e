"""The console's pure parts: DAG layout, timeline, filters, CSRF tokens (no servers)."""

from __future__ import annotations

import orjson

from kflow.api.console import canvas, dag, timeline
from kflow.api.console.jsonview import pretty
from kflow.api.console.routes_auth import _safe_next
from kflow.api.console.session import csrf_token
from kflow.api.console.views import Row, matches
from kflow.api.queries import ListFilter
from kflow.core.definition import parse_definition

DIAMOND = parse_definition(
    {
        "name": "d",
        "nodes": [
            {"id": "a", "type": "echo"},
            {"id": "items", "type": "echo", "depends_on": ["a"], "for_each": "input.xs"},
            {"id": "maybe", "type": "echo", "depends_on": ["a"], "when": "input.go"},
            {"id": "after_maybe", "type": "echo", "depends_on": ["maybe"]},
            {"id": "join", "type": "echo", "depends_on": ["items", "after_maybe"]},
        ],
    }
)


def test_map_nodes_count_items_and_skipped_branches_are_greyed() -> None:
    steps = [
        dag.StepState("a", None, "succeeded"),
        dag.StepState("items", None, "running"),
        *(dag.StepState("items", i, "succeeded" if i < 2 else "running") for i in range(5)),
        dag.StepState("maybe", None, "skipped"),
        dag.StepState("after_maybe", None, "skipped"),
    ]
    layout = dag.draw(DIAMOND, steps)
    boxes = {b.node_id: b for b in layout.nodes}
    assert len(layout.nodes) == 5  # map children are counted on their node, not drawn
    assert boxes["items"].detail == "map 2/5 · running"
    assert boxes["join"].status == dag.PENDING
    greyed = {(e.source, e.target) for e in layout.edges if e.greyed}
    assert greyed == {("a", "maybe"), ("maybe", "after_maybe")}
    assert len(layout.edges) == 5


def test_columns_are_the_kahn_levels_and_the_layout_is_deterministic() -> None:
    layout = dag.draw(DIAMOND, [])
    x = {b.node_id: b.x for b in layout.nodes}
    assert x["a"] < x["items"] == x["maybe"] < x["after_maybe"] < x["join"]
    assert dag.draw(DIAMOND, []) == layout
    assert all(0 <= b.y <= layout.height - dag.NODE_H for b in layout.nodes)


def test_level_summary_counts_each_depth_and_the_canvas_data_cannot_close_its_script() -> None:
    steps = [dag.StepState("a", None, "succeeded"), dag.StepState("maybe", None, "skipped")]
    layout = dag.draw(DIAMOND, steps)
    levels = {lv.level: (lv.total, lv.statuses) for lv in canvas.levels(layout)}
    assert levels[0] == (1, (("succeeded", 1),))
    assert levels[1] == (2, (("pending", 1), ("skipped", 1)))
    assert sum(total for total, _ in levels.values()) == len(DIAMOND.nodes)
    sneaky = dag.DagLayout((dag.NodeBox("</script>", "echo", "x", 0, 0, "l", "d"),), (), 1, 1)
    html = str(canvas.dag_data(sneaky))
    assert html.count("</script>") == 1
    body = html.split(">", 1)[1].rsplit("<", 1)[0]
    assert orjson.loads(body)["nodes"][0][0] == "</script>"


def test_timeline_shows_each_attempt_retry_backoff_and_waits() -> None:
    wf = "w1"
    events = [
        ("StepScheduled", 0, {"step_key": "w1/fetch", "attempt": 1, "kind": "task"}),
        ("StepRetryScheduled", 100, {"step_key": "w1/fetch", "attempt": 1, "due_at": 300}),
        ("StepScheduled", 300, {"step_key": "w1/fetch", "attempt": 2, "kind": "task"}),
        ("StepSucceeded", 350, {"step_key": "w1/fetch", "attempt": 2}),
        ("StepScheduled", 350, {"step_key": "w1/ok", "attempt": 1, "kind": "approval"}),
    ]
    lanes = timeline.lanes_from_events(events, wf)
    assert [ln.label for ln in lanes] == ["fetch", "ok"]
    fetch = [(b.kind, b.attempt, b.start, b.end, b.outcome) for b in lanes[0].bars]
    assert fetch == [
        ("run", 1, 0, 100, "retry"),
        ("backoff", 1, 100, 300, "retry due"),
        ("run", 2, 300, 350, "succeeded"),
    ]
    assert lanes[1].bars[0].kind == "wait" and lanes[1].bars[0].end is None
    view = timeline.view(lanes, now_ms=1000)
    assert view.span_ms == 1000
    open_bar = view.bars[-1]
    assert open_bar.x + open_bar.w == timeline.LABEL_W + timeline.CHART_W  # runs until now


def test_a_cancelled_run_closes_its_open_bars() -> None:
    events = [
        ("StepScheduled", 0, {"step_key": "w/s", "attempt": 1, "kind": "approval"}),
        ("WorkflowCancelled", 50, {}),
    ]
    (lane,) = timeline.lanes_from_events(events, "w")
    assert (lane.bars[0].end, lane.bars[0].outcome) == (50, "cancelled")


def test_live_rows_are_matched_against_the_page_filters() -> None:
    row = Row("order-42", "pay", 1, "running", 1_700_000_000_000, None, None)
    assert matches(ListFilter("t"), row)
    assert matches(ListFilter("t", status="running", name="pay", id_contains="er-4"), row)
    assert not matches(ListFilter("t", status="completed"), row)
    assert not matches(ListFilter("t", id_contains="43"), row)
    assert not matches(ListFilter("t", id_contains="ER-4"), row)  # ids are matched exactly


def test_large_values_are_cut_and_say_so() -> None:
    small = pretty({"a": 1})
    assert not small.truncated and '"a": 1' in small.text
    big = pretty({"blob": "x" * 10_000})
    assert big.truncated and len(big.text) == 2_000 and big.size > 10_000


def test_csrf_tokens_differ_per_key_and_redirects_stay_on_the_console() -> None:
    assert csrf_token("kf_a") == csrf_token("kf_a") != csrf_token("kf_b")
    assert _safe_next("/ui/workflows/x?y=1") == "/ui/workflows/x?y=1"
    for hostile in ("https://evil.example/", "//evil.example/ui", "/metrics", None, ""):
        assert _safe_next(hostile) == "/ui/workflows"
