"""Avro single-object encoding with fastavro: ``0xC3 0x01`` + 8-byte fingerprint + body.

The fingerprint is the little-endian CRC-64-AVRO of the writer schema's parsing
canonical form. On read the writer schema is looked up by fingerprint, and
resolved to the current reader schema when they differ, so records written
by a released schema version stay readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from kflow.bus.errors import DecodeError, DecodeFailure, EncodeError
from kflow.bus.schema_registry import (
    SINGLE_OBJECT_MARKER,
    RootSchema,
    SchemaRegistry,
    default_registry,
)
from kflow.core.errors import KflowError

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
        compiled = _compiled(root)
        if compiled is not None:
            try:
                return bytes(compiled[0](record, bytearray(root.header)))
            except Exception:  # fastavro below writes it or says why not
                pass
        buffer = BytesIO()
        buffer.write(root.header)
        try:
            schemaless_writer(buffer, root.parsed, record, strict_allow_default=True)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
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
        compiled = _compiled(writer) if reader is writer else None
        if compiled is not None:
            try:
                fast, end = compiled[1](data, HEADER_SIZE)
                if end == len(data):
                    return writer.name, fast
            except Exception:  # fastavro below reads it or says why not
                pass
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

    def read_leading(
        self, data: bytes, expected: str, names: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """The first fields of a record, named ``names``, without decoding the rest.

        ``None`` when that cannot be done safely: the bytes are not a record of ``expected``
        by a known writer, or that writer's schema does not start with exactly those fields
        of plain types (string, int, long, or a union of null with one of them). Then decode
        the record whole, which says what is wrong. A malformed rest is not noticed here.
        """
        if len(data) < HEADER_SIZE or data[:2] != SINGLE_OBJECT_MARKER:
            return None
        writer = self.registry.by_fingerprint(data[2:HEADER_SIZE])
        if writer is None or writer.name != expected:
            return None
        plan = _leading_plan(writer, names)
        if plan is None:
            return None
        values: dict[str, Any] = {}
        pos = HEADER_SIZE
        try:
            for name, kind in zip(names, plan, strict=True):
                if kind.nullable:
                    branch, pos = _read_varint(data, pos)
                    if branch == 0:
                        values[name] = None
                        continue
                    if branch != 1:
                        return None
                value, pos = _read_varint(data, pos)
                if kind.text:
                    end = pos + value
                    if value < 0 or end > len(data):
                        return None
                    values[name] = data[pos:end].decode()
                    pos = end
                else:
                    values[name] = value
        except (IndexError, UnicodeDecodeError, _Mismatch):
            return None
        return values


class _Leading:
    """How one leading field is written: text or a varint, and behind a null union or not."""

    __slots__ = ("nullable", "text")

    def __init__(self, text: bool, nullable: bool) -> None:
        self.text = text
        self.nullable = nullable


_PLANS: dict[tuple[bytes, tuple[str, ...]], list[_Leading] | None] = {}
_PLAIN = {"string": True, "long": False, "int": False}


def _leading_plan(writer: RootSchema, names: tuple[str, ...]) -> list[_Leading] | None:
    """The layout of ``names`` at the start of ``writer``'s record, if plain (cached)."""
    key = (writer.fingerprint, names)
    if key not in _PLANS:
        fields = writer.schema.get("fields", [])
        plan: list[_Leading] = []
        for i, name in enumerate(names):
            field = fields[i] if i < len(fields) else {}
            kind: Any = field.get("type")
            nullable = isinstance(kind, list) and len(kind) == 2 and kind[0] == "null"
            if nullable:
                kind = kind[1]
            if field.get("name") != name or not isinstance(kind, str) or kind not in _PLAIN:
                break
            plan.append(_Leading(_PLAIN[kind], nullable))
        _PLANS[key] = plan if len(plan) == len(names) else None
    return _PLANS[key]


# -- compiled fast path ------------------------------------------------------------------------
#
# fastavro walks the parsed schema again for every record (named-schema copies, a search of
# the 31 body branches, dispatch per field); profiles put about half of the orchestrator's
# CPU there. For what kflow's schemas use (records; null, boolean, int, long, string, bytes;
# ["null", X] and unions of records) straight-line Python is generated once per root schema.
# It writes the bytes fastavro writes (tests/bus/test_codec.py compares them), and whatever
# it does not expect (a missing or extra field, a wrong type, a short or corrupt body) raises,
# so the codec redoes that record with fastavro and reports what fastavro reports.

_LONG = (-(1 << 63), (1 << 63) - 1)
_INT = (-(1 << 31), (1 << 31) - 1)


# Private control flow: both are caught in this module and never reach a caller. They sit
# under KflowError anyway, so every exception class kflow defines has the one root.
class _Unsupported(KflowError):
    """The schema uses a type the generated code does not handle: fastavro serves it."""


class _Mismatch(KflowError):
    """A record or body the generated code does not take as is: fastavro decides."""


def _raw_varint(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_TABLE = 1 << 14
_RAW = [_raw_varint(z) for z in range(_TABLE)]  # the last one or two bytes of a varint
_MORE = [bytes(((z & 0x7F) | 0x80, (z >> 7) | 0x80)) for z in range(_TABLE)]  # 14 bits, more


def _varint(n: int, bounds: tuple[int, int] = _LONG) -> bytes:
    """The zig-zag varint of an Avro long (or int, with ``_INT`` bounds)."""
    if not bounds[0] <= n <= bounds[1]:
        raise _Mismatch(f"{n} out of range")
    z = (n << 1) ^ (n >> 63)
    out = b""
    while z >= _TABLE:  # 14 bits per table lookup: a ms timestamp takes three
        out += _MORE[z & (_TABLE - 1)]
        z >>= 14
    return out + _RAW[z]


def _read_varint(data: bytes, pos: int, bounds: tuple[int, int] = _LONG) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it."""
    z = shift = 0
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            n = (z >> 1) ^ -(z & 1)
            if not bounds[0] <= n <= bounds[1]:
                raise _Mismatch(f"{n} out of range")
            return n, pos
        shift += 7
        if shift > 63:
            raise _Mismatch("varint longer than 10 bytes")


_SMALL = [_varint(n) for n in range(-64, 64)]  # one byte each: _SMALL[n + 64]
_SHORT = _TABLE // 2  # strings shorter than this take their length prefix from _RAW

Writer = Callable[[Mapping[str, Any], bytearray], bytearray]
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]


class _Compiler:
    """Python source of a writer ``w<n>(record, buf)`` and a reader ``r<n>(data, pos)``
    for every record type reachable from one root schema."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.numbers: dict[str, int] = {}
        self.unions: list[str] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def record(self, schema: Mapping[str, Any]) -> int:
        if schema["name"] in self.numbers:
            return self.numbers[schema["name"]]
        n = self.numbers[schema["name"]] = len(self.numbers)
        fields = schema["fields"]
        write = [f"def w{n}(r, buf):", f"    if len(r) != {len(fields)}:", "        raise M()"]
        read = [f"def r{n}(d, p):"]
        values = []
        for f in fields:
            value = self.name("f")
            write.append(f"    {value} = r[{f['name']!r}]")
            self.write(f["type"], value, write, "    ")
            self.read(f["type"], value, read, "    ")
            values.append(f"{f['name']!r}: {value}")
        self.lines += [*write, "    return buf", *read, f"    return {{{', '.join(values)}}}, p"]
        return n

    def resolve(self, schema: Any) -> Any:
        """A named reference as the record it names; a primitive in dict form as its name."""
        if isinstance(schema, str) and schema in self.numbers:
            return {"type": "record", "name": schema, "fields": None}
        if isinstance(schema, dict) and schema.get("type") == "map" and "logicalType" not in schema:
            return schema
        if isinstance(schema, dict) and schema.get("type") != "record":
            if "logicalType" in schema or not isinstance(schema.get("type"), str):
                raise _Unsupported(str(schema))
            return self.resolve(schema["type"])
        return schema

    def write(self, schema: Any, v: str, out: list[str], pad: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.write_union(schema, v, out, pad)
        elif isinstance(schema, dict) and schema["type"] == "map":
            size, key, item = self.name("n"), self.name("k"), self.name("x")
            out += [f"{pad}if type({v}) is not dict:", f"{pad}    raise M()", f"{pad}if {v}:"]
            out.append(f"{pad}    {size} = len({v})")
            self.write("long", size, out, pad + "    ")
            out.append(f"{pad}    for {key}, {item} in {v}.items():")
            self.write("string", key, out, pad + "        ")
            self.write(schema["values"], item, out, pad + "        ")
            out.append(f"{pad}buf += b'\\x00'")  # the block of 0 entries that ends a map
        elif isinstance(schema, dict):
            n = self.numbers.get(schema["name"]) if schema["fields"] is None else None
            out.append(f"{pad}w{self.record(schema) if n is None else n}({v}, buf)")
        elif schema in ("long", "int"):
            bounds = "" if schema == "long" else ", INT"
            out.append(f"{pad}buf += SMALL[{v} + 64] if -64 <= {v} < 64 else varint({v}{bounds})")
        elif schema in ("string", "bytes"):
            b = self.name("b")
            if schema == "string":
                out.append(f"{pad}{b} = {v}.encode()")
            else:
                out += [
                    f"{pad}if type({v}) is not bytes:",
                    f"{pad}    raise M()",
                    f"{pad}{b} = {v}",
                ]
            out += [
                f"{pad}buf += RAW[len({b}) << 1] if len({b}) < {_SHORT} else varint(len({b}))",
                f"{pad}buf += {b}",
            ]
        elif schema == "boolean":
            out += [
                f"{pad}if {v} is True:",
                f"{pad}    buf += b'\\x01'",
                f"{pad}elif {v} is False:",
                f"{pad}    buf += b'\\x00'",
                f"{pad}else:",
                f"{pad}    raise M()",
            ]
        elif schema == "null":
            out += [f"{pad}if {v} is not None:", f"{pad}    raise M()"]
        else:
            raise _Unsupported(str(schema))

    def read(self, schema: Any, v: str, out: list[str], pad: str) -> None:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            self.read_union(schema, v, out, pad)
        elif isinstance(schema, dict) and schema["type"] == "map":
            size, skip, key, item = self.name("n"), self.name("s"), self.name("k"), self.name("x")
            inner = pad + "    "
            out += [f"{pad}{v} = {{}}", f"{pad}while True:"]
            self.read("long", size, out, inner)
            out += [f"{inner}if {size} == 0:", f"{inner}    break", f"{inner}if {size} < 0:"]
            out.append(f"{inner}    {size} = -{size}")  # a block with its size in bytes
            self.read("long", skip, out, inner + "    ")
            out.append(f"{inner}for _ in range({size}):")
            self.read("string", key, out, inner + "    ")
            self.read(schema["values"], item, out, inner + "    ")
            out.append(f"{inner}    {v}[{key}] = {item}")
        elif isinstance(schema, dict):
            n = self.numbers.get(schema["name"]) if schema["fields"] is None else None
            out.append(f"{pad}{v}, p = r{self.record(schema) if n is None else n}(d, p)")
        elif schema in ("long", "int"):
            bounds = "" if schema == "long" else ", INT"
            out += [
                f"{pad}if d[p] < 0x80:",
                f"{pad}    {v} = (d[p] >> 1) ^ -(d[p] & 1)",
                f"{pad}    p += 1",
                f"{pad}else:",
                f"{pad}    {v}, p = read_varint(d, p{bounds})",
            ]
        elif schema in ("string", "bytes"):
            size, end = self.name("n"), self.name("e")
            self.read("long", size, out, pad)
            out += [
                f"{pad}{end} = p + {size}",
                f"{pad}if {size} < 0 or {end} > len(d):",
                f"{pad}    raise M()",
                f"{pad}{v} = d[p:{end}]" + (".decode()" if schema == "string" else ""),
                f"{pad}p = {end}",
            ]
        elif schema == "boolean":
            out += [
                f"{pad}if d[p] > 1:",
                f"{pad}    raise M()",
                f"{pad}{v} = d[p] == 1",
                f"{pad}p += 1",
            ]
        elif schema == "null":
            out.append(f"{pad}{v} = None")
        else:
            raise _Unsupported(str(schema))

    def write_union(self, branches: list[Any], v: str, out: list[str], pad: str) -> None:
        if len(branches) == 2 and "null" in branches:
            null = branches.index("null")
            out += [
                f"{pad}if {v} is None:",
                f"{pad}    buf += {_SMALL[64 + null]!r}",
                f"{pad}else:",
            ]
            out.append(f"{pad}    buf += {_SMALL[65 - null]!r}")
            self.write(branches[1 - null], v, out, pad + "    ")
            return
        table = self.name("U")
        entries = []
        for index, branch in enumerate(branches):
            record = self.resolve(branch)
            if not isinstance(record, dict) or index >= 64:
                raise _Unsupported("a union other than [null, X] or of records")
            n = self.numbers[record["name"]] if record["fields"] is None else self.record(record)
            entries.append(f"{record['name']!r}: ({_SMALL[64 + index]!r}, w{n})")
        self.unions.append(f"{table} = {{{', '.join(entries)}}}")
        out += [
            f"{pad}if type({v}) is not tuple or len({v}) != 2:",
            f"{pad}    raise M()",
            f"{pad}prefix, write = {table}[{v}[0]]",
            f"{pad}buf += prefix",
            f"{pad}write({v}[1], buf)",
        ]

    def read_union(self, branches: list[Any], v: str, out: list[str], pad: str) -> None:
        index = self.name("i")
        self.read("long", index, out, pad)
        if len(branches) == 2 and "null" in branches:
            null = branches.index("null")
            out += [f"{pad}if {index} == {null}:", f"{pad}    {v} = None"]
            out.append(f"{pad}elif {index} == {1 - null}:")
            self.read(branches[1 - null], v, out, pad + "    ")
            out += [f"{pad}else:", f"{pad}    raise M()"]
            return
        table = self.name("R")
        entries = []
        for branch in branches:
            record = self.resolve(branch)
            if not isinstance(record, dict):
                raise _Unsupported("a union other than [null, X] or of records")
            n = self.numbers[record["name"]] if record["fields"] is None else self.record(record)
            entries.append(f"({record['name']!r}, r{n})")
        self.unions.append(f"{table} = ({', '.join(entries)},)")
        value = self.name("x")
        out += [
            f"{pad}if not 0 <= {index} < {len(branches)}:",
            f"{pad}    raise M()",
            f"{pad}{v}, read = {table}[{index}]",
            f"{pad}{value}, p = read(d, p)",
            f"{pad}{v} = ({v}, {value})",
        ]


def compile_root(parsed: Mapping[str, Any]) -> tuple[Writer, Reader] | None:
    """Generated writer and reader for a parsed root record schema (None: unsupported)."""
    compiler = _Compiler()
    try:
        compiler.record(parsed)
    except _Unsupported:
        return None
    namespace: dict[str, Any] = {
        "M": _Mismatch,
        "SMALL": _SMALL,
        "RAW": _RAW,
        "INT": _INT,
        "varint": _varint,
        "read_varint": _read_varint,
    }
    exec(
        "\n".join([*compiler.lines, *compiler.unions]), namespace
    )  # source generated above from the schema
    return namespace["w0"], namespace["r0"]


_COMPILED: dict[str, tuple[Writer, Reader] | None] = {}


def _compiled(root: RootSchema) -> tuple[Writer, Reader] | None:
    """The generated functions of ``root``, compiled on first use (one set per schema)."""
    try:
        return _COMPILED[root.canonical_form]
    except KeyError:
        compiled = _COMPILED[root.canonical_form] = compile_root(root.parsed)
        return compiled
