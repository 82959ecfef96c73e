"""``/dlq``: list, show, redrive and discard dead letters (admin scope; ADR 0083)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor

from kflow.api import dead_letters
from kflow.api.apikeys import Principal, Scope
from kflow.api.auth import require, resources
from kflow.api.console.kafka_views import Letter
from kflow.api.openapi_responses import ONE_WORKFLOW, READ, problems
from kflow.api.problems import Problem, unavailable
from kflow.bus.errors import BusError, TransactionError
from kflow.bus.redrive import ActionResult, DeadLetterActionError, Marker, act, parse_letter_id

router = APIRouter(tags=["dead letters"])
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
LETTER_PATTERN = r"^[0-9]{1,9}:[0-9]{1,19}$"


class LetterIdConvertor(Convertor[str]):
    """Routes ``/dlq/{letter}`` only for a ``partition:offset`` id, so that ``/dlq/redrive`` and
    ``/dlq/discard`` are not also a GET of a letter called "redrive" (their 405 ``Allow``)."""

    regex = LETTER_PATTERN.strip("^$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("letter", LetterIdConvertor())


class DeadLetterView(BaseModel):
    """One dead letter: where it came from, why, its record decoded if it decodes, and what
    was done to it (``action``: null, redriven or discarded)."""

    id: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None
    reason: str
    error_type: str
    message: str
    at: int
    size: int
    decoded: dict[str, Any] | None
    action: str | None = None
    action_by: str | None = None
    action_reason: str | None = None
    action_at: int | None = None


class LetterSelection(BaseModel):
    """Dead letters to act on, by id (``partition:offset`` in the DLQ topic)."""

    model_config = ConfigDict(extra="forbid")

    letters: list[Annotated[str, Field(pattern=LETTER_PATTERN)]] = Field(
        ..., min_length=1, max_length=1000
    )
    reason: str = Field("", max_length=1000)


class LetterOutcome(BaseModel):
    """What happened to one selected letter."""

    id: str
    outcome: str
    """redriven, discarded, already_redriven, already_discarded, not_found or empty."""
    detail: str


def view_of(letter: Letter, marker: Marker | None) -> DeadLetterView:
    """The JSON view of a letter and its marker."""
    return DeadLetterView(
        id=dead_letters.id_of(letter),
        source_topic=letter.source_topic,
        source_partition=letter.source_partition,
        source_offset=letter.source_offset,
        key=letter.key,
        reason=letter.reason,
        error_type=letter.error_type,
        message=letter.message,
        at=letter.at,
        size=letter.size,
        decoded=letter.decoded,
        action=marker.action if marker else None,
        action_by=marker.actor if marker else None,
        action_reason=marker.reason if marker else None,
        action_at=marker.at if marker else None,
    )


async def _shown(request: Request, who: Principal) -> dead_letters.Shown:
    try:
        return await dead_letters.visible(request, who)
    except BusError as e:
        raise unavailable("Kafka", e) from e


@router.get("/dlq", response_model=list[DeadLetterView], responses=problems(*READ))
async def list_dead_letters(request: Request, who: Admin) -> list[DeadLetterView]:
    """The newest dead letters of this tenant, newest first, with what was done to each."""
    shown = await _shown(request, who)
    return [view_of(x, shown.markers.get(dead_letters.id_of(x))) for x in shown.letters]


@router.get(
    "/dlq/{letter:letter}", response_model=DeadLetterView, responses=problems(*ONE_WORKFLOW)
)
async def show_dead_letter(
    request: Request, who: Admin, letter: Annotated[str, Path(pattern=LETTER_PATTERN)]
) -> DeadLetterView:
    """One dead letter by id (``partition:offset``)."""
    shown = await _shown(request, who)
    for x in shown.letters:
        if dead_letters.id_of(x) == letter:
            return view_of(x, shown.markers.get(letter))
    raise Problem(404, "not-found", "Not found", f"no dead letter {letter} visible to this key")


async def act_on(
    request: Request, who: Principal, ids: list[str], action: str, reason: str
) -> list[LetterOutcome]:
    """Redrive or discard the letters ``ids`` the principal may see (the others: not_found)."""
    shown = await _shown(request, who)
    visible = {dead_letters.id_of(x) for x in shown.letters}
    mine = [parse_letter_id(i) for i in dict.fromkeys(ids) if i in visible]
    cfg = resources(request).config
    results: list[ActionResult] = []
    if mine:
        try:
            results = await asyncio.to_thread(
                act, cfg.kafka_bootstrap, cfg.topic_prefix, mine, action,  # type: ignore[arg-type]
                who.actor, reason, int(time.time() * 1000),
            )  # fmt: skip
        except DeadLetterActionError as e:
            raise Problem(422, "invalid-request", "Invalid request", str(e)) from e
        except TransactionError as e:
            raise Problem(
                409, "conflict", "Conflict",
                f"another redrive or discard ran at the same time ({e}); send it again",
            ) from e  # fmt: skip
        except BusError as e:
            raise unavailable("Kafka", e) from e
    by_id = {f"{r.partition}:{r.offset}": r for r in results}
    out = []
    for i in dict.fromkeys(ids):
        r = by_id.get(i)
        if r is None:
            out.append(LetterOutcome(id=i, outcome="not_found", detail=f"no dead letter {i}"))
        else:
            out.append(LetterOutcome(id=i, outcome=r.outcome, detail=r.detail))
    return out


@router.post("/dlq/redrive", response_model=list[LetterOutcome], responses=problems(*READ, 409))
async def redrive(request: Request, who: Admin, body: LetterSelection) -> list[LetterOutcome]:
    """Send each letter's original record back to its source topic, once (a letter already
    redriven or discarded is reported, not sent again)."""
    return await act_on(request, who, body.letters, "redrive", body.reason)


@router.post("/dlq/discard", response_model=list[LetterOutcome], responses=problems(*READ, 409))
async def discard(request: Request, who: Admin, body: LetterSelection) -> list[LetterOutcome]:
    """Mark letters as discarded with a ``reason`` (required); they are never redriven."""
    if not body.reason.strip():
        raise Problem(
            422, "invalid-request", "Invalid request", "reason: say why the letters are discarded"
        )
    return await act_on(request, who, body.letters, "discard", body.reason)
