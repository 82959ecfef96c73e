"""Open streams end when their API key is revoked (ADR 0047).

A request is authenticated once, but an SSE stream lives for hours. Each stream holds a
:class:`~kflow.api.keycache.KeyWatch` on its key; the revocation listener sets it the
moment PostgreSQL notifies a change of the key's row (and on every reconnect of the
listener, which may have missed one). The stream then verifies its key again, exactly as
a new request would, and ends with an ``unauthorized`` SSE message when the key no longer
stands. Without any notification it re-verifies every ``recheck_s`` as well, the same
bound the key cache has on trusting a key whose notification was lost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import principal_for_token
from kflow.api.problems import PROBLEM_TYPE_BASE, Problem
from kflow.api.resources import ApiResources
from kflow.core.jsondoc import dumps

DEFAULT_RECHECK_S = 5.0
"""How often a stream re-verifies its key when no notification came (cache turned off)."""
UNAUTHORIZED_EVENT = "unauthorized"
"""Name of the last SSE message of a stream whose key was revoked."""


@dataclass(frozen=True)
class StreamAuth:
    """The credentials a stream was opened with."""

    token: str
    principal: Principal


class StreamGuard:
    """Watches one open stream's key; :meth:`check` says whether the stream may go on."""

    def __init__(self, res: ApiResources, auth: StreamAuth, scope: Scope = Scope.READ) -> None:
        self.res = res
        self.auth = auth
        self.scope = scope
        self.watch = res.keys.watch(auth.principal.key_id)
        self.recheck_s = res.config.auth_cache_s or DEFAULT_RECHECK_S
        self._checked = time.monotonic()

    @property
    def changed(self) -> asyncio.Event:
        """Set when the key's row may have changed (wait on it alongside other work)."""
        return self.watch.changed

    async def check(self) -> Problem | None:
        """None while the key still allows the stream; the problem to end it with otherwise.

        Cheap when nothing changed (no I/O). A verification that cannot reach PostgreSQL
        lets the stream go on and is retried after ``recheck_s``: the key was valid when
        the stream opened and a revocation is written to that same database.
        """
        now = time.monotonic()
        if not self.watch.changed.is_set() and now - self._checked < self.recheck_s:
            return None
        self.watch.changed.clear()
        self._checked = now
        try:
            current = await principal_for_token(self.res, self.auth.token)
        except Problem as e:
            if e.status == 401:
                return Problem(
                    401, "unauthorized", "Unauthorized",
                    "the API key of this stream was revoked; reconnect with a valid key "
                    "(create one with kflow apikey create)",
                )  # fmt: skip
            return None  # PostgreSQL unreachable: checked again after recheck_s
        was = self.auth.principal
        if current.tenant != was.tenant or not current.allows(self.scope):
            return Problem(
                403, "forbidden", "Forbidden",
                f"the API key of this stream no longer has the '{self.scope}' scope for "
                f"tenant {was.tenant!r}; reconnect with a key that does",
            )  # fmt: skip
        return None

    def close(self) -> None:
        self.res.keys.unwatch(self.watch)


def unauthorized_frame(problem: Problem, instance: str) -> bytes:
    """The SSE message a stream ends with when its key no longer stands (no ``id``: the
    client's Last-Event-ID stays the last event it received)."""
    body = {
        "type": PROBLEM_TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
    }
    return f"event: {UNAUTHORIZED_EVENT}\ndata: {dumps(body)}\n\n".encode()


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when one of ``events`` is set or after ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
