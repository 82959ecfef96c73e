"""Garbage never escapes as anything but DecodeError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kflow.bus.codec import HEADER_SIZE
from kflow.bus.contracts import EnvelopeMeta, decode, default_contracts
from kflow.bus.errors import DecodeError, DecodeFailure
from kflow.bus.schema_registry import default_registry
from tests.bus.samples import SAMPLES

HEADERS = [root.header for root in default_registry().versions()["current"].values()]
VALID = [
    default_contracts().encode_body(body, EnvelopeMeta(event_id="e", occurred_at=1))
    for body in SAMPLES
]


def _decode_or_error(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError as e:
        assert isinstance(e.reason, DecodeFailure)
        assert str(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_decode_error(data: bytes) -> None:
    _decode_or_error(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(HEADERS), st.binary(max_size=400))
def test_valid_header_with_random_body_raises_decode_error(header: bytes, body: bytes) -> None:
    _decode_or_error(header + body)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_corrupted_valid_records_raise_decode_error(record: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(HEADER_SIZE, len(record) - 1))
    flipped = data.draw(st.integers(1, 255))
    corrupted = bytearray(record)
    corrupted[position] ^= flipped
    _decode_or_error(bytes(corrupted))
    cut = data.draw(st.integers(0, len(record) - 1))
    _decode_or_error(record[:cut])
