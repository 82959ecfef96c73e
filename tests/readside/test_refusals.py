"""Isolating the records a store refuses (pure: a recording stand-in for the sink)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from kflow.projections.errors import UnwritableValue
from kflow.projections.log_event import DefinitionRecord
from kflow.projections.postgres import BatchResult, Partition
from kflow.projections.refusals import Record, apply_or_split


class Store:
    """Applies a batch unless it holds a refused offset; records what it committed."""

    def __init__(self, refused: set[int], error: Exception | None = None) -> None:
        self.refused = refused
        self.error = error or UnwritableValue("a value cannot be written as JSON")
        self.applied: list[int] = []
        self.positions: dict[Partition, int] = {}
        self.calls = 0

    def __call__(
        self, records: Sequence[Record], positions: Mapping[Partition, int]
    ) -> BatchResult:
        self.calls += 1
        if any(r.offset in self.refused for r in records) or (not records and -1 in self.refused):
            raise self.error
        self.applied += [r.offset for r in records]
        for r in records:
            tp = (r.topic, r.partition)
            self.positions[tp] = max(self.positions.get(tp, 0), r.offset + 1)
        for tp, o in positions.items():
            self.positions[tp] = max(self.positions.get(tp, 0), o)
        return BatchResult(applied=len(records))


def records(n: int) -> list[Record]:
    return [DefinitionRecord("t", 0, i, f"d{i}", 1, {}) for i in range(n)]


def test_refused_records_are_reported_once_and_the_rest_applied_in_order() -> None:
    store = Store(refused={2, 5})
    seen: list[tuple[int, str]] = []
    result = apply_or_split(
        store, records(8), {("t", 0): 10}, lambda r, e: seen.append((r.offset, type(e).__name__))
    )
    assert seen == [(2, "UnwritableValue"), (5, "UnwritableValue")]
    assert store.applied == [0, 1, 3, 4, 6, 7]
    assert result is not None and result.applied == 6
    assert store.positions == {("t", 0): 10}  # the batch's positions (poison included) stored


def test_a_batch_nothing_refuses_is_one_call() -> None:
    store = Store(refused=set())
    assert apply_or_split(store, records(8), {}, lambda r, e: None) is not None
    assert store.calls == 1


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("bug"), TypeError("bug")])
def test_other_errors_stop_the_batch_and_nothing_is_dead_lettered(error: Exception) -> None:
    store = Store(refused={3}, error=error)
    seen: list[Record] = []
    with pytest.raises(type(error)):
        apply_or_split(store, records(8), {}, lambda r, e: seen.append(r))
    assert (seen, store.calls, store.applied) == ([], 1, [])


def test_a_refusal_with_no_record_to_blame_is_raised() -> None:
    store = Store(refused={-1})
    with pytest.raises(UnwritableValue):
        apply_or_split(store, [], {("t", 0): 3}, lambda r, e: None)
