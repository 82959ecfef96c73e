"""Value expressions in definitions (JMESPath).

Syntax (ADR 0010):

* In a node's ``input``, a string that starts with ``$`` is a JMESPath expression:
  ``"$input.user.id"``, ``"$steps.fetch.output.url"``, ``"$item"``. Write ``$$`` to
  get a literal string starting with ``$`` (``"$$5"`` is the string ``"$5"``).
  Any other value (numbers, objects, lists, other strings) is a literal; objects and
  lists are resolved recursively.
* ``when`` and ``for_each`` are always expressions; the leading ``$`` is optional.
* The expression sees ``input`` (the workflow input), ``steps.<id>.output`` and
  ``steps.<id>.status`` for upstream nodes, and inside a ``for_each`` node ``item``
  and ``index``. ``when`` is true unless its value is null, false, "" , [] or {}.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from kflow.core.errors import KflowError


class ExpressionError(KflowError):
    """An expression does not parse, or failed while being evaluated."""


def is_expression(value: object) -> bool:
    """True for ``"$..."`` strings (but not the ``"$$..."`` escape)."""
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def expression_text(text: str) -> str:
    """Strip the optional leading ``$`` of a ``when``/``for_each`` expression."""
    return text[1:] if text.startswith("$") else text


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> ParsedResult:
    """Parse a JMESPath expression (cached); raises ``ExpressionError`` with the position."""
    try:
        return jmespath.compile(text)
    except JMESPathError as exc:
        raise ExpressionError(f"invalid expression {text!r}: {exc}") from exc
    except Exception as exc:  # jmespath raises bare errors on some malformed input
        raise ExpressionError(f"invalid expression {text!r}: {exc}") from exc


def iter_expressions(value: Any) -> Iterator[str]:
    """Every expression text inside an input template (``$`` stripped)."""
    if is_expression(value):
        yield value[1:]
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from iter_expressions(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from iter_expressions(item)


def step_references(text: str) -> tuple[set[str], bool]:
    """Node ids an expression reads as ``steps.<id>``, and whether it reads ``steps`` whole.

    Raises ``ExpressionError`` if the text does not parse.
    """
    refs: set[str] = set()
    tree: dict[str, Any] = dict(compile_expression(text).parsed)
    whole = _walk(tree, refs, at_root=True)
    return refs, whole


# Node types whose first child is evaluated against the current node and whose other
# children are evaluated against the left side's result (so `steps` there is not ours).
_LEFT_THEN_RELATIVE = frozenset(
    {
        "subexpression",
        "index_expression",
        "projection",
        "filter_projection",
        "value_projection",
        "flatten",
        "pipe",
    }
)


def _walk(node: dict[str, Any], refs: set[str], *, at_root: bool) -> bool:
    kind = node.get("type")
    children: list[Any] = node.get("children", [])
    if kind == "field":
        return at_root and node.get("value") == "steps"
    if kind == "subexpression" and at_root and _is_field(children[0], "steps"):
        second = children[1] if len(children) > 1 else None
        name = _leading_field(second)
        if name is None:
            return True
        refs.add(name)
        return False
    whole = False
    for position, child in enumerate(children):
        if isinstance(child, dict):
            child_root = at_root and (position == 0 or kind not in _LEFT_THEN_RELATIVE)
            whole = _walk(child, refs, at_root=child_root) or whole
    return whole


def _leading_field(node: dict[str, Any] | None) -> str | None:
    while node is not None and node.get("type") == "index_expression":
        node = node["children"][0]
    if node is not None and node.get("type") == "field":
        return str(node["value"])
    return None


def _is_field(node: Any, name: str) -> bool:
    return isinstance(node, dict) and node.get("type") == "field" and node.get("value") == name


def evaluate(text: str, context: dict[str, Any]) -> Any:
    """Evaluate one expression; raises ``ExpressionError`` on a runtime error."""
    try:
        return compile_expression(text).search(context)
    except ExpressionError:
        raise
    except Exception as exc:  # JMESPath type errors etc. become a step failure
        raise ExpressionError(f"expression {text!r} failed: {exc}") from exc


def resolve(
    template: Any, context: dict[str, Any], documents: Mapping[str, Any] | None = None
) -> Any:
    """Replace every ``$`` expression in ``template`` with its value; unescape ``$$``.

    ``documents`` maps expression texts that name a whole document (``input``,
    ``steps.<id>.output``) to that document, used as it is instead of evaluating.
    """
    if isinstance(template, str):
        if template.startswith("$$"):
            return template[1:]
        if template.startswith("$"):
            if documents is not None:
                found = documents.get(template[1:], _MISSING)
                if found is not _MISSING:
                    return found
            return evaluate(template[1:], context)
        return template
    if isinstance(template, dict):
        return {key: resolve(value, context, documents) for key, value in template.items()}
    if isinstance(template, list):
        return [resolve(item, context, documents) for item in template]
    return template


_MISSING = object()


def is_truthy(value: Any) -> bool:
    """JMESPath truthiness: null, false, empty string/list/object are false; 0 is true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and len(value) == 0)
