"""Regenerate the recorded histories: ``.venv/bin/python -m tests.core.record_histories``.

Only do this on purpose (a deliberate change of the event format or of a rule);
the point of the files is to catch accidental changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kflow.core import ErrorClass, event_to_dict
from kflow.core.inputs import RetryWorkflow
from kflow.core.jsondoc import plain
from tests.core.driver import Driver, node, workflow

HISTORIES = Path(__file__).parent / "histories"


def retry_and_skip() -> Driver:
    defn = workflow(
        node("fetch", input={"url": "$input.url"}, retry={"max_attempts": 3}, timeout_ms=5000),
        node("parse", "fetch", input={"body": "$steps.fetch.output.body"}),
        node("notify", "fetch", when="steps.fetch.output.notify"),
        node("after_notify", "notify"),
        node("store", "parse", "after_notify"),
        name="retry_and_skip",
    )
    d = Driver(defn, "wf-retry")
    d.start({"url": "http://example.test"})
    d.err("fetch", ErrorClass.TRANSIENT)
    d.fire_next()
    d.fire_next()  # attempt 2 times out
    d.fire_next()  # retry -> attempt 3
    d.ok("fetch", {"body": "<b/>", "notify": False})
    d.ok("fetch", {"body": "dup"}, attempt=3)  # duplicate: no event
    d.ok("parse", {"rows": 2})
    d.ok("store", "stored")
    d.ok("ghost", attempt=1)  # rejected notice
    return d


def map_review_approval() -> Driver:
    defn = workflow(
        node("items", input={"n": "$input.n"}),
        node("each", "items", for_each="steps.items.output", input={"v": "$item", "i": "$index"}),
        node("gate", "each", type="approval"),
        node("nap", "gate", type="sleep", input={"duration_ms": 250}),
        node("ship", "nap", input={"all": "$steps.each.output", "by": "$steps.gate.output.by"}),
        name="map_review_approval",
    )
    d = Driver(defn, "wf-map")
    d.start({"n": 3})
    d.ok("items", ["a", "b", "c"])
    d.ok("each[2]", "C")
    d.err("each[0]", ErrorClass.NEEDS_REVIEW)
    d.ok("each[1]", "B")
    d.signal("each[0]", {"approved": True})
    d.ok("each[0]", "A")
    d.signal("gate", {"approved": "maybe"})  # invalid: notice
    d.signal("gate", {"approved": True, "by": "ann"})
    d.fire_next()
    d.ok("ship", "shipped")
    return d


def pause_cancel() -> Driver:
    defn = workflow(
        node("a"), node("b", "a", heartbeat_timeout_ms=1000), node("c", "a"), name="pause_cancel"
    )
    d = Driver(defn, "wf-cancel")
    d.start()
    d.pause()
    d.ok("a", 1)
    d.resume()
    d.beat("b")
    d.err("c", ErrorClass.TRANSIENT)
    d.cancel()
    d.ok("b", "late", attempt=1)
    d.start()  # duplicate start: notice
    return d


def failed_map_retried() -> Driver:
    defn = workflow(
        node("split"),
        node("each", "split", for_each="steps.split.output", input={"v": "$item"}),
        node("join", "each", input={"all": "$steps.each.output"}),
        name="failed_map_retried",
    )
    d = Driver(defn, "wf-reopen")
    d.start()
    d.ok("split", [1, 2, 3])
    d.ok("each[0]", "one")
    d.err("each[1]", ErrorClass.PERMANENT)  # fails the map: each[2] is cancelled
    d.send(RetryWorkflow(workflow_id="wf-reopen", reason="fixed"))
    d.ok("each[1]", "two")
    d.ok("each[2]", "three")
    d.ok("join", "joined")
    d.send(RetryWorkflow(workflow_id="wf-reopen"))  # completed: notice
    return d


SCENARIOS: dict[str, Callable[[], Driver]] = {
    "retry_and_skip": retry_and_skip,
    "map_review_approval": map_review_approval,
    "pause_cancel": pause_cancel,
    "failed_map_retried": failed_map_retried,
}


def main() -> None:
    for name, scenario in SCENARIOS.items():
        events = [plain(event_to_dict(e)) for e in scenario().log]
        path = HISTORIES / f"{name}.json"
        path.write_text(json.dumps(events, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path} ({len(events)} events)")


if __name__ == "__main__":
    main()
