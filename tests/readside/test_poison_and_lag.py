"""Undecodable records go to the DLQ without stalling; ``kflow lag`` shows the projector group."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import decode_dead_letter
from kflow.observability.lag import LagRow, consumer_lag
from tests.kafka_helpers import consume_all, produce
from tests.readside.conftest import ReadSide, RunningProjector, wait_until
from tests.readside.expected import event_keys, logged_keys
from tests.readside.workload import make_logs

pytestmark = pytest.mark.integration


def test_poison_is_dead_lettered_and_the_rest_is_projected(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector]
) -> None:
    prefix = readside.settings.topic_prefix
    produce(readside.settings.kafka_bootstrap, f"{prefix}.events", [(b"bad-1", b"\x00garbage")])
    logs = make_logs("ok", 5)
    total = readside.produce(logs)
    projector = start_projector("postgres")
    projector.wait_applied(total)
    with readside.connect() as conn:
        assert event_keys(conn) == logged_keys(logs)
    dlq = consume_all(readside.settings.kafka_bootstrap, f"{prefix}.dlq", min_records=1)
    letter = decode_dead_letter(dlq[0].value() or b"", default_contracts().codec)
    assert letter.topic == f"{prefix}.events" and letter.original_value == b"\x00garbage"
    assert letter.reason == "not_single_object"

    def events_lag() -> list[LagRow]:
        rows = consumer_lag(readside.settings.kafka_bootstrap, prefix)
        group = f"{prefix}.projector.postgres"
        return [r for r in rows if r.group == group and r.topic == f"{prefix}.events"]

    # offsets are committed to Kafka asynchronously after each batch (for monitoring only)
    wait_until(lambda: sum(r.lag for r in events_lag()) == 0 and bool(events_lag()), "lag 0")
    assert sum(r.end for r in events_lag()) == total + 1
