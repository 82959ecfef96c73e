"""Consumer lag on the orchestrator's transactional event log (issue 11, defect 8).

Every transaction ends with a commit marker no consumer is given, so a group that consumed
every event commits ``offset + 1`` of the last one, below the partition's end offset.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from kflow.bus.clients import make_consumer
from kflow.bus.reader import TopicReader, partition_for
from kflow.bus.topics import topic_names
from kflow.cli.main import _register, app
from kflow.observability.lag import LagRow, consumer_lag
from kflow.settings import get_settings
from tests.runtime.conftest import Runtime

pytestmark = pytest.mark.integration

_register()


def task(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "echo", "queue": "default", **extra}


def _commit(bootstrap: str, group: str, offsets: dict[int, int], topic: str) -> None:
    consumer = make_consumer(bootstrap, group)
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def _last_records(bootstrap: str, topic: str) -> dict[int, int]:
    """Per partition, the offset of the last event a consumer is given."""
    last: dict[int, int] = {}
    with TopicReader(bootstrap, topic) as reader:
        for record in reader.read_to_end(30):
            last[record.partition] = record.offset
    return last


def test_a_group_that_consumed_every_event_has_lag_0(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.apply({"name": "pair", "nodes": [task("a"), task("b", depends_on=["a"])]})
    # fixed ids on both of the 2 partitions (random ones all land on one 1 run in 32)
    ids = [runtime.start("pair", workflow_id=f"lag-{i}") for i in range(6)]
    assert {partition_for(w, 2) for w in ids} == {0, 1}
    runtime.wait_final(ids)
    bootstrap, events = runtime.settings.kafka_bootstrap, topic_names(runtime.prefix).events
    last = _last_records(bootstrap, events)
    assert len(last) == 2  # both partitions have events
    group = f"{runtime.prefix}.reader-like"
    _commit(bootstrap, group, {p: o + 1 for p, o in last.items()}, events)

    rows = [r for r in consumer_lag(bootstrap, group) if r.topic == events]
    assert sorted(r.partition for r in rows) == [0, 1]
    # the end counts the commit marker after the last event: the old reading was 1 each
    assert all(r.committed is not None and r.end > r.committed for r in rows), rows
    assert [r.lag for r in rows] == [0, 0]
    gauge = REGISTRY.get_sample_value(
        "kflow_consumer_lag", {"group": group, "topic": events, "partition": "0"}
    )
    assert gauge == 0

    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", runtime.prefix)
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(app, ["lag", "--group-prefix", group])
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    total = next(line for line in shown.output.splitlines() if "total" in line)
    assert total.split("│")[-2].strip() == "0", shown.output


def test_a_group_one_event_behind_still_has_lag(runtime: Runtime) -> None:
    runtime.apply({"name": "one", "nodes": [task("a")]})
    runtime.wait_final([runtime.start("one") for _ in range(4)])
    bootstrap, events = runtime.settings.kafka_bootstrap, topic_names(runtime.prefix).events
    last = _last_records(bootstrap, events)
    group = f"{runtime.prefix}.behind"
    behind = min(last)
    _commit(bootstrap, group, {p: o if p == behind else o + 1 for p, o in last.items()}, events)

    rows: dict[int, LagRow] = {
        r.partition: r for r in consumer_lag(bootstrap, group) if r.topic == events
    }
    assert rows[behind].lag >= 1 and not rows[behind].drained
    assert all(r.lag == 0 for p, r in rows.items() if p != behind)
