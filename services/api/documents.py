"""Documents sent to the API must be interoperable JSON (I-JSON, RFC 7493); ADR 0048.

Python's ``json`` (which parses request bodies) reads ``NaN``, ``Infinity``, numbers beyond a
double (``1e400`` reads as infinity) and lone surrogate escapes (``"\\ud800"``), none of which
is Unicode text or a JSON number every reader accepts. The API's string fields already
refuse lone surrogates (pydantic); document fields (a workflow's input, a signal's payload)
are checked here, so the 422 names the exact spot instead of the request failing later.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""In a ``str`` made by ``json.loads``, any surrogate code point is a lone one (pairs are
joined into one code point)."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _number_problem(value: float) -> str | None:
    if math.isnan(value):
        return "NaN is not a JSON number; send null or a string"
    if math.isinf(value):
        return (
            "Infinity (or a number beyond ±1.8e308, e.g. 1e400) is not a JSON number every "
            "reader accepts; send a finite number, or a string for bigger values"
        )
    return None


def _text_problem(text: str, what: str) -> str | None:
    found = _LONE_SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"{what} holds a lone surrogate \\u{ord(found.group()):04x}, which is not Unicode "
        "text; send the character's UTF-8 (or a surrogate pair), or base64 for binary data"
    )


def first_not_ijson(value: Any, field: str) -> tuple[str, str] | None:
    """``(path, message)`` of the first part of ``value`` that is not I-JSON, or None.

    ``value`` is what ``json.loads`` made; the path starts at ``field`` (``input.items[2]``).
    """
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        path, node = stack.pop()
        problem: str | None = None
        if isinstance(node, float):
            problem = _number_problem(node)
        elif isinstance(node, str):
            problem = _text_problem(node, "the string")
        elif isinstance(node, dict):
            children: list[tuple[str, Any]] = []
            for key, child in node.items():
                key_problem = _text_problem(str(key), "the key")
                if key_problem is not None:
                    return f"{path}[{json.dumps(key)}]", key_problem  # escaped: printable
                children.append((_child(path, str(key)), child))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(_child(path, i), c) for i, c in enumerate(node)]))
        if problem is not None:
            return path, problem
    return None
