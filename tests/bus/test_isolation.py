"""The batch-splitting search of the EOS loop and the one record limit, without Kafka."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kflow.bus.clients import producer_config
from kflow.bus.eos_handler import PartitionId
from kflow.bus.isolation import BATCH_FAILED, BatchIsolation, Coordinates
from kflow.bus.topics import MAX_RECORD_BYTES, topic_specs
from kflow.core.limits import DEFAULT_LIMITS, MAX_OUTPUT_RECORD_BYTES, MAX_PAYLOAD_CEILING, Limits
from kflow.settings import Settings, settings_error

PART = PartitionId("t", 0)
REPO = Path(__file__).resolve().parents[2]


def _drive(total: int, bad: set[int], batch_size: int) -> tuple[BatchIsolation, list[int], int]:
    """Run batches like the loop does; (isolation, dead-lettered offsets, failed attempts)."""
    isolation = BatchIsolation(batch_size)
    position, dead, failures = 0, [], 0
    while position < total:
        batch = [
            Coordinates("t", 0, o) for o in range(position, min(total, position + isolation.limit))
        ]
        handled = [w for w in batch if isolation.fault_of(w) is None]
        if any(w.offset in bad for w in handled):
            failures += 1
            isolation.batch_failed(batch, ValueError("MSG_SIZE_TOO_LARGE"))
            assert failures < 10 * total, "the search does not converge"
            continue
        dead += [w.offset for w in batch if isolation.fault_of(w) is not None]
        position = batch[-1].offset + 1
        isolation.committed({PART: position})
    return isolation, dead, failures


@given(
    st.integers(1, 300).flatmap(
        lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), max_size=3))
    ),
    st.integers(1, 500),
)
def test_the_search_dead_letters_exactly_the_bad_records(
    case: tuple[int, set[int]], batch_size: int
) -> None:
    total, bad = case
    isolation, dead, failures = _drive(total, bad, batch_size)
    assert sorted(dead) == sorted(bad)
    # Two failures per halving, per bad record: logarithmic, not linear.
    assert failures <= len(bad) * 2 * (math.ceil(math.log2(batch_size)) + 1)
    assert isolation.limit == batch_size  # full batches again once past the search


def test_one_failure_never_blames_and_a_single_record_is_blamed_with_the_error() -> None:
    isolation = BatchIsolation(10)
    where = Coordinates("t", 0, 5)
    isolation.batch_failed([where], ValueError("refused by the broker"))
    assert isolation.fault_of(where) is None  # a server hiccup would not fail twice
    isolation.batch_failed([where], ValueError("refused by the broker"))
    fault = isolation.fault_of(where)
    assert fault is not None and fault.reason == BATCH_FAILED
    assert (fault.error_type, fault.message) == ("ValueError", "refused by the broker")


def test_revoked_partitions_are_forgotten() -> None:
    isolation = BatchIsolation(8)
    batch = [Coordinates("t", 0, o) for o in range(8)]
    isolation.batch_failed(batch, ValueError())
    isolation.batch_failed(batch, ValueError())
    assert isolation.limit == 4
    isolation.forget([PART])
    assert isolation.limit == 8


def test_producer_topic_and_payload_limits_come_from_one_place() -> None:
    assert producer_config("x")["message.max.bytes"] == MAX_RECORD_BYTES
    assert producer_config("x", transactional_id="t")["message.max.bytes"] == MAX_RECORD_BYTES
    for spec in topic_specs("p", 2):
        assert int(spec.config["max.message.bytes"]) == MAX_RECORD_BYTES, spec.name
    assert DEFAULT_LIMITS.max_payload_bytes * 3 <= MAX_OUTPUT_RECORD_BYTES < MAX_RECORD_BYTES
    # The local broker's default for topics kflow did not make is the same number.
    broker = (REPO / "deploy/local/kafka/server.properties").read_text().splitlines()
    assert f"message.max.bytes={MAX_RECORD_BYTES}" in broker
    with pytest.raises(ValueError, match="max_payload_bytes"):
        Limits(max_payload_bytes=MAX_PAYLOAD_CEILING + 1)


def test_a_payload_limit_over_the_ceiling_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(max_payload_bytes=MAX_PAYLOAD_CEILING + 1)
    assert "KFLOW_MAX_PAYLOAD_BYTES" in str(settings_error(caught.value))
