"""Node code of the document pipeline (load with ``--nodes kflow.examples.docpipe.nodes``).

The "documents" are generated from the document id so the demo needs no
network; the shapes are what a real pipeline would pass around.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from kflow.core.errors import PermanentError, TransientError
from kflow.processor.context import StepContext
from kflow.processor.registry import node

_WORDS = [
    "kafka",
    "event",
    "log",
    "workflow",
    "step",
    "retry",
    "approval",
    "section",
    "summary",
    "entity",
    "invoice",
    "customer",
    "contract",
    "payment",
    "order",
    "audit",
    "policy",
    "schedule",
    "review",
    "record",
    "stream",
]


class FetchInput(BaseModel):
    """Which document to fetch."""

    doc_id: str = Field(min_length=1)
    sections: int = Field(4, ge=1, le=200)


class Section(BaseModel):
    """One section of a fetched document."""

    index: int
    heading: str
    text: str


class Document(BaseModel):
    """A fetched document."""

    doc_id: str
    title: str
    sections: list[Section]


def _word_stream(seed: str) -> list[str]:
    digest = hashlib.sha256(seed.encode()).digest() * 4
    return [_WORDS[b % len(_WORDS)] for b in digest]


@node("docpipe.fetch", input_model=FetchInput, output_model=Document)
async def fetch(value: FetchInput, ctx: StepContext) -> Document:
    """Fetch the document (simulated I/O)."""
    await asyncio.sleep(0.005)
    sections = [
        Section(
            index=i,
            heading=f"Section {i + 1}",
            text=" ".join(_word_stream(f"{value.doc_id}/{i}")[: 20 + 5 * i]),
        )
        for i in range(value.sections)
    ]
    return Document(doc_id=value.doc_id, title=f"Document {value.doc_id}", sections=sections)


@node("docpipe.extract_entities", input_model=Document)
def extract_entities(doc: Document) -> dict[str, Any]:
    """Count the capitalised or domain words per document."""
    words = Counter(w for s in doc.sections for w in re.findall(r"[a-z]+", s.text))
    return {"entities": [w for w, _ in words.most_common(5)]}


@node("docpipe.summarize", input_model=Document)
def summarize(doc: Document) -> dict[str, Any]:
    """The first words of every section."""
    return {"summary": " / ".join(" ".join(s.text.split()[:4]) for s in doc.sections)}


@node("docpipe.analyze_section", input_model=Section)
def analyze_section(section: Section) -> dict[str, Any]:
    """Statistics of one section (a map step runs this once per section)."""
    words = section.text.split()
    return {"index": section.index, "words": len(words), "top": Counter(words).most_common(1)[0][0]}


class ClassifyInput(BaseModel):
    """Input of the flaky classifier."""

    doc_id: str
    failure_rate: float = Field(0.3, ge=0, le=1)


@node("docpipe.classify", input_model=ClassifyInput)
def classify(value: ClassifyInput, ctx: StepContext) -> dict[str, Any]:
    """Call a rate-limited classifier that fails now and then (transient: retried).

    Whether an attempt fails is derived from its idempotency key, so a
    redelivered attempt behaves the same and runs are repeatable.
    """
    if not value.doc_id:
        raise PermanentError("doc_id is empty")
    roll = int.from_bytes(hashlib.sha256(ctx.idempotency_key.encode()).digest()[:4], "big")
    if roll / 2**32 < value.failure_rate and ctx.attempt < 4:
        raise TransientError(f"classifier rate limited (attempt {ctx.attempt})")
    labels = ("contract", "invoice", "report", "memo")
    return {"label": labels[roll % len(labels)], "attempts": ctx.attempt}


@node("docpipe.merge")
def merge(value: dict[str, Any]) -> dict[str, Any]:
    """Assemble the final record from the branch outputs."""
    sections = value.get("sections") or []
    return {
        "doc_id": value.get("doc_id"),
        "label": value.get("label"),
        "entities": value.get("entities"),
        "summary": value.get("summary"),
        "words": sum(int(s.get("words", 0)) for s in sections if isinstance(s, dict)),
        "approved_by": value.get("approved_by"),
    }
