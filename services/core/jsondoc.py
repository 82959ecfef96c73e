"""JSON documents that carry their text: parsed at most once, serialised at most once.

A step's input and output, a workflow's input and output, a signal's payload and a
heartbeat's details are :class:`Json` values (ADR 0026). One read off the wire keeps the
text it arrived as and parses it only if someone asks for ``value``; one made from Python
data serialises it only when the text is needed. Either way the text is written out again
exactly as it is, so the text a node's output got in the processor is the text of the
StepResult, of the StepSucceeded event and of the read model's row.

The meaning is always that of the standard library's ``json``: :func:`loads` returns what
``json.loads`` returns (``NaN``, integers over 64 bits and lone surrogates included) and
:func:`dumps` writes the document ``json.dumps(..., allow_nan=False)`` writes (non-finite
floats refused, lone surrogates escaped so the text is valid UTF-8). orjson does the work
whenever its result means the same, which is almost always.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import orjson

__all__ = [
    "NULL",
    "Json",
    "coerce_documents",
    "document_fields",
    "dumps",
    "dumps_bytes",
    "json_default",
    "loads",
    "plain",
]

_UNSET: Any = object()
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
"""Types ``json`` refuses are not rendered by orjson either: they reach ``default``."""
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"0" * 19  # an integer of 19+ digits may not fit 64 bits: orjson reads it as a float
_SURROGATE = re.compile("[\ud800-\udfff]")


class Json:
    """One JSON document: its ``text`` and its ``value``, each made from the other once.

    Build one with :meth:`from_text` (text off the wire: kept verbatim, parsed lazily),
    :meth:`of` (plain Python JSON data: serialised lazily) or :meth:`compose` (data holding
    other documents, which are embedded by their text). Never mutate a ``value``.

    Two documents are equal when their texts are, or else their values; a document equals
    a plain Python value equal to its value (so ``StepSucceeded(output={"a": 1})`` compares
    equal to the same event read off the wire).
    """

    __slots__ = ("_finite", "_parts", "_text", "_value")

    def __init__(self, text: str | None, value: Any, parts: Any = _UNSET) -> None:
        self._text = text
        self._value = value
        self._parts = parts
        self._finite = True

    @classmethod
    def from_text(cls, text: str) -> Json:
        """The document in ``text``, kept as it is (not parsed, so not checked, until used)."""
        return NULL if text == "null" else cls(text, _UNSET)

    @classmethod
    def of(cls, value: Any) -> Json:
        """A document of plain JSON data (a ``Json`` is returned as it is, ``None`` is NULL)."""
        if type(value) is Json:
            return value
        return NULL if value is None else cls(None, value)

    @classmethod
    def compose(cls, parts: Any) -> Json:
        """A document of dicts and lists that hold ``Json`` documents (embedded by their text)."""
        return cls(None, _UNSET, parts)

    @property
    def text(self) -> str:
        """Compact JSON text; ``ValueError``/``TypeError`` if the value is not a JSON document."""
        text = self._text
        if text is None:
            parts = self._parts
            text = self._text = dumps(self._value) if parts is _UNSET else _dumps_embedding(parts)
        return text

    @property
    def value(self) -> Any:
        """The Python value (what ``json.loads`` gives); ``ValueError`` if the text is not JSON."""
        value = self._value
        if value is _UNSET:
            if self._parts is not _UNSET:
                value = plain(self._parts)
            else:
                assert self._text is not None
                value, self._finite = _parse(self._text)
            self._value = value
        return value

    @property
    def size(self) -> int:
        """Bytes of the UTF-8 text (the unit of every payload limit)."""
        text = self.text
        return len(text) if text.isascii() else len(text.encode())

    def measure(self) -> int:
        """:attr:`size`, once the document is known to be JSON kflow writes.

        Raises ``ValueError`` naming the problem: text that does not parse, a value that
        does not serialise, or a non-finite number (``NaN``, ``Infinity``: not JSON).
        """
        if self._text is None:
            try:
                dumped = self.text
            except (TypeError, RecursionError) as exc:
                raise ValueError(str(exc)) from exc
            return len(dumped) if dumped.isascii() else len(dumped.encode())
        self.value  # noqa: B018  (parsing is the check)
        if not self._finite:
            raise ValueError("Out of range float values are not JSON compliant")
        return self.size

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        try:
            if type(other) is Json:
                if self._text is not None and self._text == other._text:
                    return True
                return bool(self.value == other.value)
            return bool(self.value == other)
        except ValueError:
            return False

    def __hash__(self) -> int:
        return hash(_frozen(self.value))

    def __repr__(self) -> str:
        try:
            return f"Json({self.text!r})"
        except (TypeError, ValueError):
            return f"Json.of({self._value!r})"

    def __copy__(self) -> Json:
        return self

    def __deepcopy__(self, memo: object) -> Json:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        if self._text is not None or self._value is _UNSET:
            return (Json.from_text, (self.text,))
        return (Json.of, (self._value,))


NULL = Json("null", None)
"""The JSON document ``null`` (what a missing document means)."""


def document_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """``(name, is_list)`` of the dataclass fields of ``cls`` annotated ``Json``/``list[Json]``."""
    return tuple(
        (f.name, f.type in ("list[Json]", list[Json]))
        for f in dataclasses.fields(cls)
        if f.type in ("Json", Json, "list[Json]", list[Json])
    )


def coerce_documents(obj: object, fields: tuple[tuple[str, bool], ...]) -> None:
    """Turn plain values of a frozen dataclass's document fields into ``Json`` in place."""
    for name, is_list in fields:
        value = getattr(obj, name)
        if is_list:
            if any(type(item) is not Json for item in value):
                object.__setattr__(obj, name, [Json.of(item) for item in value])
        elif type(value) is not Json:
            object.__setattr__(obj, name, Json.of(value))


# -- reading -------------------------------------------------------------------------------


def loads(text: str | bytes) -> Any:
    """The value ``json.loads`` returns for ``text``; raises ``json.JSONDecodeError``.

    orjson reads it (several times faster) unless it refuses the text (``NaN``,
    ``Infinity``, lone surrogates, numbers beyond a double, deep nesting) or it may hold
    an integer over 64 bits, which orjson reads as a float: 19 or more digits in a row,
    in a text orjson would not write back the same.
    """
    return _parse(text)[0]


def _parse(text: str | bytes) -> tuple[Any, bool]:
    """The value and whether every number in it is finite."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    else:
        data = text.encode() if isinstance(text, str) else text
        if _LONG_RUN not in data.translate(_DIGITS) or orjson.dumps(value) == data:
            return value, True  # orjson never reads a non-finite number
    finite = [True]

    def constant(name: str) -> float:
        finite[0] = False
        return float(name)

    def number(digits: str) -> float:
        result = float(digits)
        if math.isinf(result):
            finite[0] = False
        return result

    return json.loads(text, parse_constant=constant, parse_float=number), finite[0]


def plain(obj: Any) -> Any:
    """``obj`` with every ``Json`` inside replaced by its value (containers copied as needed)."""
    if type(obj) is Json:
        return obj.value
    if isinstance(obj, dict):
        return {key: plain(item) for key, item in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(item) for item in obj]
    return obj


def _frozen(value: Any) -> Any:
    """A hashable stand-in equal where the values are equal (for ``Json.__hash__``)."""
    if isinstance(value, dict):
        return frozenset((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


# -- writing -------------------------------------------------------------------------------


def json_default(obj: Any) -> orjson.Fragment:
    """orjson's ``default`` for data that may hold ``Json`` documents (embedded verbatim)."""
    if type(obj) is Json:
        return orjson.Fragment(obj.text)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """Compact JSON text of ``obj``, the document ``json.dumps`` writes; documents verbatim.

    Raises ``ValueError`` (non-finite numbers, circular data) or ``TypeError`` (types JSON
    has no place for) like ``json.dumps(..., allow_nan=False)``. orjson writes it unless
    its text would differ in meaning: it refuses integers over 64 bits, non-string keys
    and lone surrogates, and writes NaN and infinities as ``null``, so a text containing
    ``null`` is checked against the value. (orjson does render UUIDs and enums, which
    ``json`` refuses; they are not JSON values a caller passes.)
    """
    if type(obj) is Json:
        return obj.text
    try:
        data = orjson.dumps(obj, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError too: embedded documents, or see above
        return _dumps_embedding(obj)
    if b"null" in data and orjson.loads(data) != obj:
        return _dumps_slow(obj)  # a NaN or infinity written as null (or a tuple read back)
    return data.decode()


def _dumps_embedding(obj: Any) -> str:
    """:func:`dumps` of data that may hold ``Json`` documents."""
    try:
        data = orjson.dumps(obj, default=json_default, option=_OPTIONS)
    except TypeError:
        return _dumps_slow(obj)
    if b"null" in data and _has_nonfinite(obj):
        return _dumps_slow(obj)
    return data.decode()


def dumps_bytes(obj: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes."""
    return dumps(obj).encode()


def _has_nonfinite(obj: Any) -> bool:
    """True if a float outside the embedded documents is NaN or infinite."""
    kind = type(obj)
    if kind is dict:
        items: Any = obj.values()
    elif kind is list or kind is tuple:
        items = obj
    elif kind in _LEAVES:
        return False
    elif isinstance(obj, float):
        return not math.isfinite(obj)
    elif isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, list | tuple):
        items = obj
    else:
        return False
    for item in items:  # noqa: SIM110  (a loop, not any(): this walk is on hot paths)
        if type(item) not in _LEAVES and _has_nonfinite(item):
            return True
    return False


_LEAVES = frozenset({str, int, bool, type(None), Json})


def _std(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps_slow(obj: Any) -> str:
    try:
        text = _encode(obj)
    except RecursionError as exc:
        raise ValueError(f"document nested too deeply: {exc}") from exc
    if not text.isascii() and _SURROGATE.search(text):
        # json leaves a lone surrogate as it is with ensure_ascii=False: valid JSON text
        # but not encodable as UTF-8; its escape (what ensure_ascii=True writes) is both.
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def _encode(obj: Any) -> str:
    """``json.dumps`` of ``obj``, except that ``Json`` documents go in as their text."""
    if type(obj) is Json:
        return obj.text
    if isinstance(obj, dict) and _holds_json(obj):
        items = (f"{_std({key: 0})[1:-3]}:{_encode(item)}" for key, item in obj.items())
        return "{" + ",".join(items) + "}"
    if isinstance(obj, list | tuple) and _holds_json(obj):
        return "[" + ",".join(_encode(item) for item in obj) + "]"
    return _std(obj)


def _holds_json(obj: Any) -> bool:
    if type(obj) is Json:
        return True
    if isinstance(obj, dict):
        return any(_holds_json(item) for item in obj.values())
    if isinstance(obj, list | tuple):
        return any(_holds_json(item) for item in obj)
    return False
