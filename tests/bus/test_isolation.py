"""The batch-splitting search of the EOS loop, without Kafka (see test_eos_isolation.py)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from kflow.bus.eos_handler import PartitionId
from kflow.bus.isolation import BATCH_FAILED, BatchIsolation, Coordinates

PART = PartitionId("t", 0)


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
