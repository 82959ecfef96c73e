"""A batch the store refuses because of one record's values: find that record, project the rest.

A value ``json`` reads but the store cannot take (orjson refuses an integer over 64 bits or
a lone surrogate, PostgreSQL a ``\\u0000`` in jsonb) fails the whole batch, and would fail
it again after every restart: the partition would stall. So a refused batch is applied in
halves until each refused record is alone; that record is handed to ``refused`` (the
projector dead-letters it), its offset is stored, and everything else is applied as usual.

Only errors caused by values count (:func:`refusal_errors`). Any other error is a bug or an
outage: it is not guessed to be one record's fault, it stops the batch as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kflow.projections.errors import UnwritableValue
from kflow.projections.log_event import DefinitionRecord, LogEvent
from kflow.projections.postgres import BatchResult, Partition

Record = LogEvent | DefinitionRecord
Apply = Callable[[Sequence[Record], Mapping[Partition, int]], BatchResult | None]
"""Apply records (in log order) and store ``positions``; None when the projector stopped."""
Refused = Callable[[Record, Exception], None]


def refusal_errors() -> tuple[type[Exception], ...]:
    """Errors a record's own values cause in a sink (lazy: psycopg loads on first use)."""
    import psycopg

    return (UnwritableValue, psycopg.DataError, UnicodeEncodeError)


def apply_or_split(
    apply: Apply,
    records: Sequence[Record],
    positions: Mapping[Partition, int],
    refused: Refused,
) -> BatchResult | None:
    """``apply(records, positions)``; when the store refuses it, isolate the refused records.

    About 2·log2(n) extra transactions per refused record, and none when nothing is refused.
    ``positions`` (the offsets after the whole batch, poison included) go with the last part.
    """
    try:
        return apply(records, positions)
    except refusal_errors() as e:
        if not records:
            raise  # nothing but offsets was written: not a record's fault
        if len(records) == 1:
            refused(records[0], e)
            rec = records[0]
            after = {(rec.topic, rec.partition): rec.offset + 1}
            return apply([], _furthest(after, positions))
    half = len(records) // 2
    first = apply_or_split(apply, records[:half], {}, refused)
    if first is None:
        return None
    second = apply_or_split(apply, records[half:], positions, refused)
    if second is None:
        return None
    return BatchResult(
        applied=first.applied + second.applied,
        skipped_offsets=first.skipped_offsets + second.skipped_offsets,
        duplicates=first.duplicates + second.duplicates,
        unfoldable=first.unfoldable + second.unfoldable,
    )


def _furthest(a: Mapping[Partition, int], b: Mapping[Partition, int]) -> dict[Partition, int]:
    return {tp: max(a.get(tp, 0), b.get(tp, 0)) for tp in {*a, *b}}
