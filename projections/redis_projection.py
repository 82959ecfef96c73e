"""The Redis projection: a hot status hash per workflow and a pub/sub channel of its events.

Each event goes through one Lua script that, atomically, does nothing unless
the event's ``seq`` is newer than the hash's ``last_seq``; otherwise it
records the seq, updates the summary fields (the core's ``WorkflowSummary``
and changed ``StepView`` rows, sent with the workflow's last event in the
batch), sets or clears the TTL, and publishes the event. So
redelivery after a crash neither rewinds the hash nor republishes an event.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from kflow.core.events import StepEvent, WorkflowStarted, is_notice
from kflow.core.jsondoc import Json, dumps, loads
from kflow.core.state import TERMINAL_WORKFLOW
from kflow.core.views import StepView, WorkflowSummary, apply_step_event, apply_workflow_event
from kflow.observability.metrics import EVENTS_IN, PROJECTION_BATCH
from kflow.projections import fold
from kflow.projections.log_event import DEFAULT_TENANT, DefinitionRecord, LogEvent
from kflow.projections.postgres import BatchResult, Partition, observe_delay
from kflow.projections.redis_keys import events_channel, status_key

log = logging.getLogger(__name__)

# KEYS: status hash, events channel. ARGV: seq, ttl seconds (0 = keep), event JSON,
# then optional field/value pairs of the summary.
APPLY_LUA = """
local current = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
local seq = tonumber(ARGV[1])
if seq <= current then
  return 0
end
redis.call('HSET', KEYS[1], 'last_seq', ARGV[1])
if #ARGV > 3 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""


def event_message(le: LogEvent) -> str:
    """The JSON published per event; same fields as an item of ``GET /workflows/{id}/events``."""
    at = fold.ms_to_datetime(le.event.at)
    assert at is not None
    return dumps(
        {
            "seq": le.seq,
            "type": le.type,
            "at": at.isoformat(),
            "event_id": le.event_id,
            "actor": le.actor,
            "body": fold.event_body(le),
        }
    )


def summary_fields(
    summary: WorkflowSummary, steps: Sequence[StepView], updated_at_ms: int
) -> list[str]:
    """Field/value pairs of the status hash: flat status fields, the summary, changed steps."""
    fields = [
        "status", summary.status,
        "name", summary.name,
        "tenant", summary.tenant or DEFAULT_TENANT,
        "updated_at", str(updated_at_ms),
        "summary", dumps(summary.to_dict()),
    ]  # fmt: skip
    for v in steps:
        fields += [f"step:{v.step_key}", dumps(v.to_dict())]
    return fields


def _step_view(data: dict[str, Any]) -> StepView:
    """A step row read back from its hash field (the documents come back as plain data)."""
    return StepView(**{**data, "input": Json.of(data["input"]), "output": Json.of(data["output"])})


@dataclass
class _Cached:
    summary: WorkflowSummary
    steps: dict[str, StepView]


class RedisProjector:
    """Applies events to Redis; idempotent by ``seq``, so Kafka's committed offsets suffice."""

    projection = "redis"
    reads_definitions = False

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        finished_ttl_s: int = 86_400,
        cache_size: int = 50_000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.finished_ttl_s = finished_ttl_s
        self._script = client.register_script(APPLY_LUA)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_size = cache_size

    def stored_offsets(self) -> dict[Partition, int] | None:
        return None

    def forget(self) -> None:
        self._cache.clear()

    def recover(self) -> None:
        self._cache.clear()  # redis-py reconnects by itself; rows are re-read from the hashes

    def close(self) -> None:
        self.client.close()

    def _load(self, workflow_ids: Sequence[str]) -> dict[str, _Cached]:
        out = {w: self._cache[w] for w in workflow_ids if w in self._cache}
        missing = [w for w in workflow_ids if w not in out]
        if missing:
            pipe = self.client.pipeline(transaction=False)
            for w in missing:
                pipe.hgetall(status_key(self.prefix, w))
            for w, raw in zip(missing, pipe.execute(), strict=True):
                if raw and b"summary" in raw:
                    steps = {
                        k.decode()[5:]: _step_view(loads(v))
                        for k, v in raw.items()
                        if k.startswith(b"step:")
                    }
                    summary = loads(raw[b"summary"])
                    summary["output"] = Json.of(summary["output"])
                    out[w] = _Cached(WorkflowSummary(**summary), steps)
        return out

    def apply(
        self,
        events: Sequence[LogEvent],
        definitions: Sequence[DefinitionRecord] = (),
        positions: Mapping[Partition, int] | None = None,
    ) -> BatchResult:
        """Apply a batch with one pipelined round trip (plus one to read uncached rows)."""
        started = time.perf_counter()
        result = BatchResult()
        per_wf: dict[str, list[LogEvent]] = {}
        for le in events:
            if not is_notice(le.event):
                per_wf.setdefault(le.workflow_id, []).append(le)
        known = self._load(list(per_wf))
        updated: dict[str, _Cached] = {}
        pipe = self.client.pipeline(transaction=False)
        calls = 0
        for wf, items in per_wf.items():
            cached = known.get(wf)
            floor = cached.summary.seq if cached is not None else 0
            fresh = [le for le in items if le.seq > floor]
            result.duplicates += len(items) - len(fresh)
            if not fresh:
                continue
            summary = cached.summary if cached is not None else None
            steps = dict(cached.steps) if cached is not None else {}
            changed: dict[str, StepView] = {}
            for le in fresh:
                ev = le.event
                if summary is None and not isinstance(ev, WorkflowStarted):
                    # e.g. the hash expired or was lost: still publish, leave the summary alone
                    result.unfoldable.append((le, f"{le.type} before WorkflowStarted"))
                    continue
                summary = apply_workflow_event(summary, ev)
                if isinstance(ev, StepEvent):
                    steps[ev.step_key] = changed[ev.step_key] = apply_step_event(
                        steps.get(ev.step_key), ev
                    )
            if summary is not None:
                updated[wf] = _Cached(summary, steps)
            key, channel = status_key(self.prefix, wf), events_channel(self.prefix, wf)
            for i, le in enumerate(fresh):
                args: list[Any] = [le.seq, 0, event_message(le)]
                if i == len(fresh) - 1 and summary is not None:
                    if summary.status in TERMINAL_WORKFLOW:
                        args[1] = self.finished_ttl_s
                    args.extend(summary_fields(summary, list(changed.values()), le.event.at))
                self._script(keys=[key, channel], args=args, client=pipe)
                calls += 1
        applied = sum(int(r) for r in pipe.execute()) if calls else 0
        for wf, c in updated.items():
            self._cache[wf] = c
            self._cache.move_to_end(wf)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        result.applied = applied
        result.duplicates += calls - applied
        PROJECTION_BATCH.labels(self.projection).observe(time.perf_counter() - started)
        observe_delay(self.projection, events, time.time() * 1000)
        if events:
            EVENTS_IN.labels("projector-redis", events[0].topic).inc(len(events))
        return result
