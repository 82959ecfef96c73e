"""Node registry: Python callables registered under a node type name.

A node is ``fn(input)`` or ``fn(input, ctx)``, sync or async. With pydantic
``input_model``/``output_model`` the JSON input is validated into the model and
the returned model is dumped back to JSON::

    @node("summarize", input_model=Doc)
    async def summarize(doc: Doc, ctx: StepContext) -> dict[str, str]: ...
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from kflow.core.errors import KflowError
from kflow.processor.context import StepContext

F = TypeVar("F", bound=Callable[..., Any])


class NodeRegistryError(KflowError, ValueError):
    """A node registration or lookup problem the user must fix in their node code."""


@dataclass(frozen=True)
class NodeHandler:
    """One registered node type."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    wants_context: bool
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    inline: bool = False
    """Run a sync node on the event loop thread (only for nodes that never block)."""

    def parse_input(self, value: Any) -> Any:
        """Validate the JSON input (raises ``pydantic.ValidationError``)."""
        if self.input_model is None:
            return value
        return self.input_model.model_validate(value)

    def dump_output(self, value: Any) -> Any:
        """Turn the node's return value into a JSON value."""
        if self.output_model is not None and not isinstance(value, BaseModel):
            value = self.output_model.model_validate(value)
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return value

    def call_args(self, value: Any, ctx: StepContext) -> tuple[Any, ...]:
        """The positional arguments the node function takes."""
        return (value, ctx) if self.wants_context else (value,)


def _wants_context(fn: Callable[..., Any]) -> bool:
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) not in (1, 2):
        raise NodeRegistryError(
            f"node function {fn.__qualname__} must take (input) or (input, ctx), "
            f"it takes {len(params)} positional parameters"
        )
    return len(params) == 2


class NodeRegistry:
    """Maps node type names to handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, NodeHandler] = {}

    def node(
        self,
        name: str | None = None,
        *,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
        inline: bool = False,
        replace: bool = False,
    ) -> Callable[[F], F]:
        """Decorator registering ``fn`` as node type ``name`` (default: the function name).

        Sync nodes run in a thread pool; ``inline=True`` runs a sync node directly on the
        event loop, saving the thread hop for trivial nodes that never block.
        """

        def register(fn: F) -> F:
            node_name = name or fn.__name__
            if node_name in self._handlers and not replace:
                existing = self._handlers[node_name].fn
                if existing is not fn:
                    raise NodeRegistryError(
                        f"node type {node_name!r} is already registered by "
                        f"{existing.__module__}.{existing.__qualname__}; pick another name"
                    )
            self._handlers[node_name] = NodeHandler(
                name=node_name,
                fn=fn,
                is_async=asyncio.iscoroutinefunction(fn),
                wants_context=_wants_context(fn),
                input_model=input_model,
                output_model=output_model,
                inline=inline,
            )
            return fn

        return register

    def get(self, name: str) -> NodeHandler | None:
        """The handler for ``name`` or None."""
        return self._handlers.get(name)

    def names(self) -> list[str]:
        """Registered node type names, sorted."""
        return sorted(self._handlers)


registry = NodeRegistry()
"""The process-wide registry the ``@node`` decorator fills."""

node = registry.node


def load_node_modules(modules: Iterable[str]) -> list[str]:
    """Import modules so their ``@node`` decorators run; returns the registered names.

    Raises NodeRegistryError naming the module when an import fails.
    """
    import kflow.processor.builtin_nodes  # noqa: F401  (registers the built-ins)

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise NodeRegistryError(
                f"cannot import node module {module!r}: {exc}; "
                "pass a dotted module path importable from the current directory"
            ) from exc
    return registry.names()
