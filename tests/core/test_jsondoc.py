"""JSON documents carry their text and mean what Python's ``json`` makes of them (ADR 0026).

Property tests over JSON documents including the values where orjson and ``json`` part
ways: NaN and infinities, integers over 64 bits, lone surrogates, deep nesting.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kflow.bus.contracts import EnvelopeMeta, decode, encode_event, encode_input
from kflow.core.events import StepScheduled, StepSucceeded
from kflow.core.inputs import StartWorkflow, StepResult
from kflow.core.jsondoc import NULL, Json, dumps, loads, plain

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
META = EnvelopeMeta(event_id="e", occurred_at=1)

strings = st.one_of(
    st.text(),  # includes lone surrogates (category Cs) and every other code point
    st.sampled_from(["\ud800", "\udfff", "\udc00\ud83d", "\ud83d\ude00", "\x00", "\u2028", "null"]),
)
big_ints = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**63 + 2),
    st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=2**64 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.just(10**19),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e-7, 5e-324, 1.7976931348623157e308, 1e16]),
    strings,
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=25,
)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
with_non_finite = st.recursive(
    st.one_of(scalars, non_finite),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=25,
)


def exactly(value: Any) -> Any:
    """``value`` with scalars tagged by type and repr: 1, 1.0 and True differ, NaN equals NaN."""
    if isinstance(value, dict):
        return ("dict", [(key, exactly(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [exactly(item) for item in value])
    return (type(value).__name__, repr(value))


def has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(has_non_finite(v) for v in value)
    return False


def texts_json_writes(value: Any) -> list[str]:
    """Texts another writer (Python's json, several options) would produce for ``value``."""
    texts = [
        json.dumps(value),
        json.dumps(value, separators=(",", ":")),
        json.dumps(value, indent=2, sort_keys=True),
    ]
    unescaped = json.dumps(value, ensure_ascii=False)
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in unescaped):  # else it is not UTF-8 text
        texts.append(unescaped)
    return texts


@SETTINGS
@given(documents)
def test_written_text_is_the_document_json_writes(value: Any) -> None:
    doc = Json.of(value)
    text = doc.text
    assert text == dumps(value)
    assert exactly(json.loads(text)) == exactly(json.loads(json.dumps(value)))
    assert doc.measure() == doc.size == len(text.encode("utf-8"))  # valid UTF-8: no raw surrogate
    assert doc.value is value  # made from the value: never parsed back


@SETTINGS
@given(documents)
def test_written_text_is_stable_through_a_parse(value: Any) -> None:
    """What a snapshot restore or a read model reload gives back serialises to the same text.

    (From the first parse on: a Python string holding a high and a low surrogate as two
    characters is written as two escapes, which ``json`` reads back as one character.)
    """
    text = dumps(loads(dumps(value)))
    assert dumps(loads(text)) == text
    assert Json.of(loads(text)).text == text


@SETTINGS
@given(with_non_finite)
def test_non_finite_numbers_are_refused_like_json_refuses_them(value: Any) -> None:
    if not has_non_finite(value):
        return
    with pytest.raises(ValueError):
        json.dumps(value, allow_nan=False)
    with pytest.raises(ValueError):
        dumps(value)
    with pytest.raises(ValueError, match="not JSON compliant"):
        Json.of(value).measure()


@SETTINGS
@given(with_non_finite)
def test_text_from_others_is_kept_and_read_as_json_reads_it(value: Any) -> None:
    for text in texts_json_writes(value):
        doc = Json.from_text(text)
        assert doc.text is text or (text == "null" and doc is NULL)
        assert exactly(doc.value) == exactly(json.loads(text))
        assert exactly(loads(text)) == exactly(json.loads(text))
        assert exactly(loads(text.encode())) == exactly(json.loads(text))
        if has_non_finite(json.loads(text)):
            with pytest.raises(ValueError, match="not JSON compliant"):
                Json.from_text(text).measure()
        else:
            assert Json.from_text(text).measure() == len(text.encode())


@SETTINGS
@given(documents, documents)
def test_embedded_documents_go_in_verbatim(first: Any, second: Any) -> None:
    spaced = json.dumps(first, indent=1)  # another writer's text: kept as it is
    a, b = Json.from_text(spaced), Json.of(second)
    composite = Json.compose({"a": a, "list": [b, None, 1.5], "n": 2**70})
    text = composite.text
    assert text == f'{{"a":{spaced},"list":[{b.text},null,1.5],"n":{2**70}}}'
    expected = {"a": json.loads(spaced), "list": [second, None, 1.5], "n": 2**70}
    assert exactly(json.loads(text)) == exactly(json.loads(json.dumps(expected)))
    assert exactly(plain(composite.value)) == exactly(composite.value)


@SETTINGS
@given(documents)
def test_equality_is_by_text_or_value_and_hash_agrees(value: Any) -> None:
    value = json.loads(json.dumps(value))  # what a document can hold (see above)
    made, read = Json.of(value), Json.from_text(json.dumps(value, indent=1))
    assert made == read and read == made
    assert hash(made) == hash(read)
    assert made == Json.from_text(made.text)
    assert made == value or value != value  # plain values compare by value
    assert pickle.loads(pickle.dumps(read)).text == read.text
    assert copy.deepcopy(read) is read


@SETTINGS
@given(documents)
def test_records_carry_the_text_byte_for_byte(value: Any) -> None:
    text = json.dumps(value, indent=1)  # not what kflow would write: must survive anyway
    result = StepResult(workflow_id="w", step_key="w/a", attempt=1, output=Json.from_text(text))
    decoded = decode(encode_input(result, META)).body
    assert isinstance(decoded, StepResult) and decoded.output.text == text
    event = StepSucceeded(
        workflow_id="w", seq=2, at=1, step_key="w/a", attempt=1, output=decoded.output
    )
    back = decode(encode_event(event, META)).body
    assert isinstance(back, StepSucceeded) and back.output.text == text
    assert back == event


def test_documents_that_orjson_reads_differently_are_read_as_json_reads_them() -> None:
    for text in ("[18446744073709551616]", "-9223372036854775809", "[1e400]", "NaN", '"\\ud800"'):
        assert exactly(loads(text)) == exactly(json.loads(text))
    snowflake = "[1234567890123456789]"  # 19 digits that fit 64 bits: orjson's reading is kept
    assert loads(snowflake) == [1234567890123456789]
    with pytest.raises(json.JSONDecodeError):
        loads("{not json")
    with pytest.raises(ValueError):
        Json.from_text("{not json").measure()


def test_values_json_cannot_write_are_refused_with_its_errors() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})
    with pytest.raises(ValueError):
        Json.of({1, 2}).measure()
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError):
        dumps(circular)
    deep: Any = "x"
    for _ in range(300):  # beyond orjson's nesting limit; json writes it
        deep = [deep]
    assert dumps(deep) == json.dumps(deep, separators=(",", ":"))
    assert dumps({1: 2, None: 3, 2.5: 4}) == json.dumps(
        {1: 2, None: 3, 2.5: 4}, separators=(",", ":")
    )


def test_plain_data_given_for_a_document_is_wrapped() -> None:
    start = StartWorkflow(workflow_id="w", name="n", version=1, input={"a": 1})
    assert type(start.input) is Json and start.input.value == {"a": 1}
    assert StartWorkflow(workflow_id="w", name="n", version=1).input is NULL
    scheduled = StepScheduled(
        workflow_id="w", seq=2, at=1, step_key="w/a", attempt=1, node_id="a", index=None,
        node_type="echo", queue="q", kind="task", input=[1],
    )  # fmt: skip
    assert scheduled.input == [1] and scheduled.input.text == "[1]"
