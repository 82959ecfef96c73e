"""Transactional outbox: start workflows atomically with your own PostgreSQL writes.

:func:`enqueue_start` writes a row in the caller's transaction; :class:`Relay`
(``kflow run relay``) publishes committed rows as StartWorkflow commands.
"""

from kflow.relay.errors import OutboxInputError, RelayError, RowRejected
from kflow.relay.outbox import enqueue_start, enqueue_start_async, install

__all__ = [
    "OutboxInputError",
    "RelayError",
    "RowRejected",
    "enqueue_start",
    "enqueue_start_async",
    "install",
]
