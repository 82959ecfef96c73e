"""Live SSE stream of one workflow's events, resumable with ``Last-Event-ID``.

Order of operations makes it gapless: subscribe to the Redis channel first,
then backfill from PostgreSQL, then forward live events, dropping any seq
already sent. A live event that arrives ahead of a gap waits while the gap is
filled from PostgreSQL (the PostgreSQL projection may trail the Redis one);
during silence the stream also polls PostgreSQL, so it still completes when
the Redis projection is down. A stream whose API key is revoked ends within one
poll (``_POLL_S``) of the notification, with an ``unauthorized`` message (ADR 0047).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator

from pydantic import ValidationError
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from kflow.api.models import EventView
from kflow.api.problems import unavailable
from kflow.api.queries import list_events
from kflow.api.resources import ApiResources
from kflow.api.streamauth import StreamAuth, StreamGuard, unauthorized_frame
from kflow.core.events import TERMINAL_TYPES
from kflow.core.jsondoc import dumps, loads
from kflow.observability.metrics import SSE_CLIENTS
from kflow.projections.redis_keys import events_channel

TERMINAL = frozenset(t.__name__ for t in TERMINAL_TYPES)
LAST_EVENT_ID_PATTERN = r"^([0-9]{1,19})?$"
"""Empty is allowed: it means no event was received yet."""
MAX_SEQ = 2**62
_POLL_S = 0.5
_CONFIRM_S = 2.0
_PAGE = 500


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
"""Characters some clients split lines at (Python's ``splitlines``): escaped, the JSON
means the same and a data line stays one line for every reader."""


def sse_frame(ev: EventView) -> bytes:
    """One SSE message: the seq is the id, the type is the event name."""
    data = dumps(ev.model_dump(mode="json"))  # not model_dump_json: lone surrogates (ADR 0026)
    if not data.isascii():
        data = data.translate(_LINE_BREAKS)
    return f"id: {ev.seq}\nevent: {ev.type}\ndata: {data}\n\n".encode()


def parse_last_event_id(value: str) -> int | None:
    """The seq in a ``Last-Event-ID`` header (ASCII digits, at most ``MAX_SEQ``), else None.

    ``str.isdigit`` is not the test: it is true for ``'²'``, which ``int`` refuses."""
    if not value or not re.fullmatch(LAST_EVENT_ID_PATTERN, value):
        return None
    seq = int(value)
    return seq if seq <= MAX_SEQ else None


async def open_subscription(res: ApiResources, workflow_id: str) -> PubSub:
    """Subscribe before anything is read from PostgreSQL; Redis down is a 503.

    ``subscribe`` only sends the command: on a pooled connection to a server that has just
    died it "succeeds". The server's confirmation is what proves the subscription is live
    (and that events published from now on reach it, which makes the backfill gapless)."""
    pubsub = res.redis.pubsub()
    try:
        await pubsub.subscribe(events_channel(res.config.redis_prefix, workflow_id))
        confirmed = await pubsub.get_message(timeout=_CONFIRM_S)
        if confirmed is None or confirmed.get("type") != "subscribe":
            raise TimeoutError(f"no subscription confirmation within {_CONFIRM_S:.0f}s")
    except (RedisError, OSError) as e:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        raise unavailable("Redis", e) from e
    return pubsub


async def _backfill(res: ApiResources, workflow_id: str, after: int) -> list[EventView]:
    async with res.db() as conn:
        out: list[EventView] = []
        while True:
            page = await list_events(conn, workflow_id, after, _PAGE, include_notices=False)
            out.extend(page)
            if len(page) < _PAGE:
                return out
            after = page[-1].seq


async def event_stream(
    res: ApiResources,
    pubsub: PubSub,
    workflow_id: str,
    last_seq: int,
    auth: StreamAuth,
    instance: str,
) -> AsyncIterator[bytes]:
    """SSE bytes: every event with seq > ``last_seq`` once, in order; ends after a terminal
    one, or with an ``unauthorized`` message once ``auth``'s key no longer stands."""
    SSE_CLIENTS.inc()
    sent = last_seq
    pending: dict[int, EventView] = {}
    last_frame = time.monotonic()
    guard = StreamGuard(res, auth)
    try:
        yield b"retry: 1000\n\n"
        needs_db = True
        while True:
            refused = await guard.check()
            if refused is not None:
                yield unauthorized_frame(refused, instance)
                return
            if needs_db:
                try:
                    for ev in await _backfill(res, workflow_id, sent):
                        pending.setdefault(ev.seq, ev)
                except Exception:  # PostgreSQL down: keep live events flowing, retry later
                    pass
                needs_db = False
            while sent + 1 in pending:
                ev = pending.pop(sent + 1)
                sent = ev.seq
                last_frame = time.monotonic()
                yield sse_frame(ev)
                if ev.type in TERMINAL:
                    return
            for seq in [s for s in pending if s <= sent]:
                del pending[seq]
            try:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL_S)
            except (RedisError, OSError):
                msg = None
                await asyncio.sleep(_POLL_S)
            if msg is None:
                needs_db = True  # silence: the Redis projection may be behind or down
                if time.monotonic() - last_frame > res.config.sse_keepalive_s:
                    last_frame = time.monotonic()
                    yield b": keepalive\n\n"
                continue
            try:
                ev = EventView.model_validate(loads(msg["data"]))
            except (ValidationError, ValueError):
                continue
            if ev.seq > sent:
                pending.setdefault(ev.seq, ev)
            if pending and sent + 1 not in pending:
                needs_db = True  # a gap: the missing events are in PostgreSQL (or soon will be)
    finally:
        guard.close()
        SSE_CLIENTS.dec()
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
