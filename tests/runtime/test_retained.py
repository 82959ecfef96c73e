"""RetainedIds: which finished runs a retry may reopen, and when their snapshots go."""

from __future__ import annotations

from kflow.orchestrator.retained import RetainedIds


def test_ids_expire_once_the_window_passed_and_a_rerun_is_not_expired_early() -> None:
    ids = RetainedIds(window_ms=100)
    ids.add(0, "a", 1_000)
    ids.add(1, "b", 1_050)
    assert ids.contains(0, "a") and not ids.contains(1, "a")
    assert ids.contains(0, "a", now=1_100) and not ids.contains(0, "a", now=1_101)
    assert ids.expire(1_100) == []
    ids.discard("b")  # retried: running again
    ids.add(1, "b", 1_500)  # finished again later
    assert ids.expire(1_101) == ["a"]
    assert not ids.contains(0, "a") and ids.contains(1, "b")
    assert ids.expire(1_200) == []  # b's first finish is stale
    ids.drop_partitions([1])
    assert len(ids) == 0 and ids.expire(10_000) == []
