"""Per-process console state: the list hub and the lag history, made on first use."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request

from kflow.api.auth import resources
from kflow.api.console.kafka_views import LagHistory
from kflow.api.console.live import ListHub


@dataclass
class ConsoleState:
    """Lives on ``app.state.console`` from the first console request until shutdown."""

    hub: ListHub
    lag: LagHistory


def console_state(request: Request) -> ConsoleState:
    """The process's console state (created with the API's Redis client)."""
    app = request.app
    state: ConsoleState | None = getattr(app.state, "console", None)
    if state is None:
        res = resources(request)
        state = ConsoleState(ListHub(res.redis, res.config.redis_prefix), LagHistory())
        app.state.console = state
    return state


async def close_console_state(app: FastAPI) -> None:
    """Stop the hub's subscription (at shutdown)."""
    state: ConsoleState | None = getattr(app.state, "console", None)
    if state is not None:
        await state.hub.stop()
        app.state.console = None
