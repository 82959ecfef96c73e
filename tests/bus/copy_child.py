"""A copy loop run as a child process by the crash test and the benchmark.

``python -m tests.bus.copy_child BOOTSTRAP INPUT OUTPUT GROUP INSTANCE BATCH [DELAY_MS]``
copies every record of INPUT to OUTPUT (same key, value and headers) through
:class:`EosLoop` until killed or sent SIGTERM. DELAY_MS (default 0) sleeps per record
inside the transaction, so a kill is likely to land while one is open.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from kflow.bus.eos import EosConfig, EosLoop, Handler, PartitionId
from kflow.bus.message import BusMessage, OutRecord


class CopyHandler(Handler[bytes]):
    """Copies each record to ``output`` unchanged."""

    def __init__(self, output: str, delay_s: float = 0.0) -> None:
        self.output = output
        self.delay_s = delay_s

    def handle(self, message: BusMessage[bytes]) -> Sequence[OutRecord]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return [OutRecord(self.output, message.key, message.raw, message.headers)]

    def on_assign(self, partitions: Sequence[PartitionId]) -> None:
        print("assigned", " ".join(str(p.partition) for p in partitions), flush=True)


def _timeouts() -> dict[str, object]:
    """``COPY_CHILD_TXN_TIMEOUT_MS`` shortens the broker's abort of a dead instance's
    transaction (and the client timeouts it bounds) for tests that wait for it."""
    txn_ms = os.environ.get("COPY_CHILD_TXN_TIMEOUT_MS")
    if txn_ms is None:
        return {}
    return {
        "kafka_timeout_s": int(txn_ms) / 1000 / 2 - 1,
        "producer_overrides": {"transaction.timeout.ms": int(txn_ms)},
        "consumer_overrides": {"session.timeout.ms": 6000},  # the broker's minimum
    }


def identity(data: bytes) -> bytes:
    return data


def main(argv: list[str]) -> None:
    bootstrap, source, output, group, instance, batch = argv[:6]
    delay_ms = float(argv[6]) if len(argv) > 6 else 0.0
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    if os.environ.get("KFLOW_EOS_DEBUG"):
        logging.basicConfig(
            level=logging.DEBUG,
            format=f"%(created).3f {instance} %(message)s",
            filename=os.environ["KFLOW_EOS_DEBUG"],
        )
    config = EosConfig(
        bootstrap=bootstrap,
        group_id=group,
        instance_id=instance,
        topics=(source,),
        dlq_topic=f"{output}.dlq",
        batch_size=int(batch),
        **_timeouts(),
    )
    loop = EosLoop(config, CopyHandler(output, delay_ms / 1000), identity)
    print("ready", flush=True)
    loop.run(lambda: stopping)


if __name__ == "__main__":
    main(sys.argv[1:])
