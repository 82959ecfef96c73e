"""Bus benchmark: codec records/s, compression, and EOS copy-loop throughput on the real broker.

    .venv/bin/python bench/bus_bench.py [--bootstrap 127.0.0.1:9092] [--quick]

Prints one line per figure. Needs the local stack (``kflow dev up``) for the Kafka parts;
the topics it creates (prefix ``bench-bus-<hex>``) are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.clients import producer_config
from kflow.bus.codec import AvroCodec
from kflow.bus.contracts import EnvelopeMeta, decode, encode_input
from kflow.bus.envelope import envelope_meta
from kflow.bus.eos import EosConfig, EosLoop, Handler
from kflow.bus.message import BusMessage, OutRecord
from kflow.bus.topics import TopicSpec
from kflow.core.inputs import StepResult


def _payload_1kb(seed: int) -> dict[str, Any]:
    """A JSON document of about 1 KB, shaped like a step output, different per seed."""
    rng = random.Random(seed)
    rows = [
        {
            "sku": f"SKU-{rng.randrange(100_000):05d}",
            "qty": rng.randrange(1, 9),
            "price": round(rng.uniform(1, 500), 2),
            "ok": rng.random() < 0.5,
        }
        for _ in range(16)
    ]
    doc = {
        "order": f"order-{seed}",
        "customer": {"id": uuid.UUID(int=rng.getrandbits(128)).hex, "tier": "gold"},
        "rows": rows,
    }
    assert 900 < len(json.dumps(doc)) < 1300, len(json.dumps(doc))
    return doc


def _sample(i: int) -> tuple[StepResult, EnvelopeMeta]:
    result = StepResult(
        workflow_id=f"wf-{i % 1000}",
        step_key=f"wf-{i % 1000}/charge",
        attempt=1,
        output=_payload_1kb(i),
    )
    meta = envelope_meta(
        result,
        event_id=str(uuid.UUID(int=i)),
        occurred_at=1_700_000_000_000 + i,
        correlation_id="corr",
        actor="svc",
        tenant="acme",
    )
    return result, meta


def bench_codec(count: int) -> list[bytes]:
    """Encode/decode rates for envelope + 1 KB JSON; returns the encoded records."""
    samples = [_sample(i) for i in range(count)]
    encode_input(*samples[0])  # build caches outside the timing
    start = time.perf_counter()
    encoded = [encode_input(body, meta) for body, meta in samples]
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    for data in encoded:
        decode(data)
    decode_s = time.perf_counter() - start
    codec = AvroCodec()
    start = time.perf_counter()
    for data in encoded:
        codec.decode(data)
    raw_decode_s = time.perf_counter() - start
    print(f"record size: {len(encoded[0])} bytes (envelope + 1 KB JSON payload)")
    print(f"encode (core object -> bytes): {count / encode_s:,.0f} records/s")
    print(f"decode (bytes -> core object): {count / decode_s:,.0f} records/s")
    print(f"decode (bytes -> Avro dict only): {count / raw_decode_s:,.0f} records/s")
    return encoded


def bench_compression(bootstrap: str, topic: str, values: list[bytes], count: int) -> None:
    """Producer throughput and wire bytes per compression codec (acks=all, idempotent)."""
    for compression in ("none", "lz4", "zstd", "snappy", "gzip"):
        stats: dict[str, Any] = {}

        def on_stats(text: str, into: dict[str, Any] = stats) -> None:
            into.update(json.loads(text))

        config = producer_config(bootstrap, overrides={"compression.type": compression})
        config.update({"statistics.interval.ms": 100, "stats_cb": on_stats})
        producer = Producer(config)
        start = time.perf_counter()
        for i in range(count):
            while True:
                try:
                    producer.produce(topic, values[i % len(values)], f"wf-{i % 1000}")
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)
        elapsed = time.perf_counter() - start
        time.sleep(0.25)
        producer.poll(0)
        ratio = stats.get("tx_bytes", 0) / max(stats.get("txmsg_bytes", 1), 1)
        print(
            f"produce compression={compression:6s}: {count / elapsed:,.0f} records/s, "
            f"wire bytes / payload bytes = {ratio:.2f}"
        )


class _Copy(Handler[bytes]):
    def __init__(self, output: str) -> None:
        self.output = output

    def handle(self, message: BusMessage[bytes]) -> Sequence[OutRecord]:
        return [OutRecord(self.output, message.key, message.raw)]


def _identity(data: bytes) -> bytes:
    return data


def bench_eos(
    bootstrap: str,
    prefix: str,
    values: list[bytes],
    batch: int,
    count: int,
    compression: str | None = None,
    overrides: dict[str, str] | None = None,
) -> None:
    """Copy-loop throughput, from the first committed batch to the last (no group join)."""
    source, output = f"{prefix}.in{batch}", f"{prefix}.out{batch}"
    create_topics(bootstrap, [TopicSpec(source, 4), TopicSpec(output, 4)])
    producer = Producer(producer_config(bootstrap))
    for i in range(count):
        while True:
            try:
                producer.produce(source, values[i % len(values)], f"wf-{i % 1000}")
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    config = EosConfig(
        bootstrap=bootstrap,
        group_id=f"{prefix}.g{batch}",
        instance_id="bench-0",
        topics=(source,),
        dlq_topic=f"{prefix}.dlq",
        batch_size=batch,
        max_batch_ms=100,
        producer_overrides={
            **({"compression.type": compression} if compression else {}),
            **(overrides or {}),
        },
    )
    loop = EosLoop(config, _Copy(output), _identity)
    started: float | None = None
    first = 0
    try:
        while loop.stats.records_in < count:
            done = loop.run_once()
            if done and started is None:
                started, first = time.perf_counter(), done
        assert started is not None
        elapsed = time.perf_counter() - started
    finally:
        loop.close()
    measured = loop.stats.records_in - first
    label = f" compression={compression}" if compression else ""
    label += "".join(f" {k}={v}" for k, v in (overrides or {}).items())
    print(
        f"EOS copy batch={batch:5d}{label}: {measured / elapsed:,.0f} records/s "
        f"({loop.stats.commits} transactions, {measured} records timed, aborts {loop.stats.aborts})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--compression", help="override the loop producer's compression.type")
    parser.add_argument("--only-eos", type=int, help="run only the EOS copy at this batch size")
    parser.add_argument("--count", type=int, help="records for --only-eos")
    parser.add_argument(
        "--producer-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting of the EOS loop's producer (repeatable), e.g. linger.ms=0",
    )
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    values = bench_codec(int(20_000 * scale))
    prefix = f"bench-bus-{uuid.uuid4().hex[:8]}"
    created = [f"{prefix}.compression"] + [
        f"{prefix}.{kind}{b}" for b in (1, 100, 1000) for kind in ("in", "out")
    ]
    try:
        if args.only_eos:
            created.extend([f"{prefix}.in{args.only_eos}", f"{prefix}.out{args.only_eos}"])
            count = args.count or max(int(100_000 * scale), args.only_eos * 5)
            overrides = dict(item.split("=", 1) for item in args.producer_set)
            bench_eos(
                args.bootstrap, prefix, values, args.only_eos, count, args.compression, overrides
            )
            return
        create_topics(args.bootstrap, [TopicSpec(f"{prefix}.compression", 4)])
        bench_compression(args.bootstrap, f"{prefix}.compression", values, int(50_000 * scale))
        for batch, count in ((1, 1_000), (100, 30_000), (1000, 100_000)):
            count = max(int(count * scale), batch * 5)
            bench_eos(args.bootstrap, prefix, values, batch, count, args.compression)
    finally:
        delete_topics(args.bootstrap, list(dict.fromkeys(created)))  # admin refuses duplicates


if __name__ == "__main__":
    main()
