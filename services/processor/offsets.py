"""Which consumed offsets may be committed when tasks finish out of order."""

from __future__ import annotations


class PartitionProgress:
    """Offsets of one partition in flight; the commit point only passes finished ones.

    Tasks finish in any order, but a committed offset means "everything before it
    is done", so the commit point is the first offset still in flight.
    """

    def __init__(self) -> None:
        self._pending: dict[int, bool] = {}  # offset -> finished; insertion = consume order
        self._position: int | None = None  # first offset not known to be finished
        self._committed: int | None = None  # last position the broker acknowledged

    def started(self, offset: int) -> None:
        """A task at ``offset`` was consumed."""
        self._pending[offset] = False

    def finished(self, offset: int) -> None:
        """The task at ``offset`` has its result delivered."""
        if offset in self._pending:
            self._pending[offset] = True
        while self._pending:
            first = next(iter(self._pending))
            if not self._pending[first]:
                break
            del self._pending[first]
            self._position = first + 1

    def caught_up(self, position: int) -> None:
        """Nothing is in flight and the consumer's position is ``position``.

        The position steps over transaction markers (the orchestrator writes tasks in
        transactions), which no task offset does: committing it is what makes an idle
        group's lag read 0 instead of 1 per partition.
        """
        if not self._pending and (self._position is None or position > self._position):
            self._position = position

    @property
    def in_flight(self) -> int:
        """Consumed tasks whose result is not delivered yet (or waiting behind one)."""
        return len(self._pending)

    def to_commit(self) -> int | None:
        """The offset to commit, or None when the broker already has it."""
        return None if self._position == self._committed else self._position

    def acknowledged(self, offset: int) -> None:
        """The broker stored ``offset`` for this partition."""
        self._committed = offset
