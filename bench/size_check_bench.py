"""Cost of the record size checks on the hot path (ADR 0027); pure, no broker needed.

    .venv/bin/python bench/size_check_bench.py [--records 200000]

Prints µs per call for: ``record_size`` of a typical event record (what the EOS loop
adds per output), the isolation lookup per input (``fault_of``), and ``notice_cause``
of a 3 MB refused result (only paid when an input is refused).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from kflow.bus.contracts import EnvelopeMeta, default_contracts
from kflow.bus.isolation import BATCH_FAILED, BatchIsolation, Coordinates, Fault
from kflow.bus.message import OutRecord, record_size, trace_headers
from kflow.core.events import StepSucceeded
from kflow.core.inputs import StepResult
from kflow.core.jsondoc import Json
from kflow.core.machine import notice_cause

_DOC = Json.of({"rows": [{"sku": f"SKU-{i:05d}", "qty": i % 7, "ok": True} for i in range(25)]})


def _per_call_us(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):  # best of five: the machine is shared
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    n = parser.parse_args().records
    record = OutRecord(
        "kflow.events",
        "wf-0123456789",
        b"\xc3\x01" + b"e" * 1200,
        trace_headers(correlation_id="wf-0123456789", traceparent="00-" + "a" * 50),
    )
    isolation = BatchIsolation(500)
    isolation.blame(Coordinates("kflow.results", 1, 7), Fault(BATCH_FAILED, "X", "y"))
    where = Coordinates("kflow.results", 0, 12345)
    big = StepResult(workflow_id="ghost", step_key="ghost/a", attempt=1, output="x" * 3_000_000)
    size_us = _per_call_us(lambda: record_size(record), n)
    print(f"record_size, 1.2 KB event + 2 headers: {size_us:.3f} µs")
    idle = BatchIsolation(500)
    print(f"isolation check per input, none blamed: {_per_call_us(lambda: idle.blaming, n):.3f} µs")
    blamed_us = _per_call_us(lambda: isolation.fault_of(where), n)
    print(f"isolation.fault_of per input, one blamed: {blamed_us:.3f} µs")
    empty = _per_call_us(lambda: None, n)
    print(f"(an empty call costs {empty:.3f} µs on this machine)")
    print(f"notice_cause of a 3 MB result: {_per_call_us(lambda: notice_cause(big), 200):.1f} µs")
    # For scale: what producing that record already costs before the check.
    event = StepSucceeded(
        workflow_id="wf-1", seq=3, at=1, step_key="wf-1/a", attempt=1, output=_DOC
    )
    meta = EnvelopeMeta(event_id="wf-1/3")
    contracts = default_contracts()
    encode_us = _per_call_us(lambda: contracts.encode_body(event, meta), n // 10)
    print(f"(for scale: encoding a StepSucceeded with a 1 KB output costs {encode_us:.1f} µs)")


if __name__ == "__main__":
    main()
