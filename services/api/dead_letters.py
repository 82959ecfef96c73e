"""The dead letters one principal may see and act on (the console and the JSON API share it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import Request

from kflow.api.apikeys import Principal
from kflow.api.auth import resources
from kflow.api.console import kafka_views
from kflow.api.console.kafka_views import Letter
from kflow.bus.redrive import Marker, letter_id, read_markers
from kflow.bus.topics import topic_names


@dataclass(frozen=True, slots=True)
class Shown:
    """The letters visible to a principal, with what was done to each, and how many hide."""

    letters: list[Letter]
    markers: dict[str, Marker]
    hidden: int
    topic: str


async def visible(request: Request, who: Principal) -> Shown:
    """Letters of the principal's tenant (undecodable ones unless their key is another
    tenant's workflow); raises ``ReaderError`` when Kafka cannot be read."""
    cfg = resources(request).config
    topic = topic_names(cfg.topic_prefix).dlq
    letters = await asyncio.to_thread(kafka_views.dead_letters, cfg.kafka_bootstrap, topic)
    markers = await asyncio.to_thread(read_markers, cfg.kafka_bootstrap, cfg.topic_prefix)
    keys = sorted({x.key for x in letters if x.tenant is None and x.key})
    foreign: set[str] = set()
    if keys:
        async with resources(request).db() as conn:
            rows = await (
                await conn.execute(
                    "SELECT workflow_id FROM executions"
                    " WHERE workflow_id = ANY(%s) AND tenant <> %s",
                    (keys, who.tenant),
                )
            ).fetchall()
        foreign = {str(r[0]) for r in rows}
    shown = kafka_views.visible_letters(letters, who.tenant, foreign)
    return Shown(shown, markers, len(letters) - len(shown), topic)


def id_of(letter: Letter) -> str:
    """The letter's id in URLs and commands: ``partition:offset`` in the DLQ topic."""
    return letter_id(letter.dlq_partition, letter.dlq_offset)
