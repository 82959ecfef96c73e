"""Avro single-object encoding with fastavro: ``0xC3 0x01`` + 8-byte fingerprint + body.

The fingerprint is the little-endian CRC-64-AVRO of the writer schema's parsing
canonical form. On read the writer schema is looked up by fingerprint, and
resolved to the current reader schema when they differ, so records written
by a released schema version stay readable.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from services.bus.errors import DecodeError, DecodeFailure, EncodeError
from services.bus.schema_registry import SINGLE_OBJECT_MARKER, SchemaRegistry, default_registry

HEADER_SIZE = 10


class AvroCodec:
    """Encode and decode root records of one :class:`SchemaRegistry`."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or default_registry()

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Single-object bytes of ``record`` written with the current schema of ``name``.

        Union branches that are records must be given as ``(full name, dict)`` tuples.
        """
        root = self.registry.current(name)
        buffer = BytesIO()
        buffer.write(root.header)
        try:
            schemaless_writer(buffer, root.parsed, record, strict_allow_default=True)
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise EncodeError(f"record does not fit schema {name}: {e!r}") from e
        return buffer.getvalue()

    def decode(self, data: bytes, expected: str | None = None) -> tuple[str, dict[str, Any]]:
        """The root type name and the record, read with the current reader schema.

        Raises :class:`DecodeError` for anything that is not a readable record.
        """
        if len(data) < HEADER_SIZE:
            if data[:2] != SINGLE_OBJECT_MARKER[: len(data)]:
                raise DecodeError(DecodeFailure.NOT_SINGLE_OBJECT, "missing marker 0xC3 0x01")
            raise DecodeError(
                DecodeFailure.TRUNCATED, f"{len(data)} bytes, the header alone needs {HEADER_SIZE}"
            )
        if data[:2] != SINGLE_OBJECT_MARKER:
            raise DecodeError(
                DecodeFailure.NOT_SINGLE_OBJECT, f"starts with {data[:2].hex()}, not c301"
            )
        fp = data[2:HEADER_SIZE]
        writer = self.registry.by_fingerprint(fp)
        if writer is None:
            raise DecodeError(
                DecodeFailure.UNKNOWN_FINGERPRINT,
                f"no known schema has fingerprint {fp.hex()}; upgrade the reader's schemas",
            )
        if expected is not None and writer.name != expected:
            raise DecodeError(DecodeFailure.WRONG_TYPE, f"expected {expected}, got {writer.name}")
        reader = self.registry.current(writer.name)
        buffer = BytesIO(data)
        buffer.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(
                buffer,
                writer.parsed,
                None if reader is writer else reader.parsed,
                return_record_name=True,
            )
        except SchemaResolutionError as e:
            raise DecodeError(
                DecodeFailure.INCOMPATIBLE,
                f"{writer.name} {writer.version} cannot be read as current: {e}",
            ) from e
        except (EOFError, StopIteration) as e:
            raise DecodeError(DecodeFailure.TRUNCATED, f"{writer.name} body ends early") from e
        except Exception as e:  # fastavro raises many types on garbage bodies
            raise DecodeError(
                DecodeFailure.MALFORMED, f"{writer.name} body is not valid Avro: {e!r}"
            ) from e
        consumed = buffer.tell()
        if consumed > len(data):
            raise DecodeError(DecodeFailure.TRUNCATED, f"{writer.name} body ends early")
        if consumed != len(data):
            raise DecodeError(
                DecodeFailure.MALFORMED, f"{len(data) - consumed} bytes after the {writer.name}"
            )
        if not isinstance(record, dict):
            raise DecodeError(DecodeFailure.MALFORMED, f"{writer.name} is not a record")
        return writer.name, record
