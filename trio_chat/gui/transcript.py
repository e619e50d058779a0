"""The rows of one conversation in the order they are shown, without Qt.

Messages are ordered by id (the daemon's order), so a page of older messages goes on top
and a message that arrives twice (an answer and an event, or history after a reconnect)
is shown once. A note (a join, a refusal, the connection) stays where it happened: after
the newest message shown at that moment. Lines you sent that the daemon has not stored yet
stay at the bottom until they give way to the message as the room sees it.

Every change is planned first (`plan_*` returns where the row goes, or None), then done
(`apply`): a Qt model announces the change in between.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

from .rows import Kind, Row

Key = tuple[float, int]


@dataclass(frozen=True, slots=True)
class Insertion:
    index: int
    key: Key
    row: Row


class Transcript:
    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._rows: list[Row] = []
        self._ids: set[int] = set()
        self._newest = 0
        self._order = itertools.count(1)
        self._pending: dict[int, Key] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Row:
        return self._rows[index]

    @property
    def rows(self) -> list[Row]:
        return list(self._rows)

    @property
    def oldest_id(self) -> int | None:
        """The id of the oldest message shown (None when there is none)."""
        return min(self._ids) if self._ids else None

    @property
    def pending(self) -> int:
        """Lines sent that are not stored yet."""
        return len(self._pending)

    def plan_message(self, row: Row) -> Insertion | None:
        """Where a stored message goes; None if it is shown already."""
        assert row.message_id is not None and row.kind is Kind.MESSAGE
        if row.message_id in self._ids:
            return None
        key = (float(row.message_id), 0)
        return Insertion(bisect.bisect(self._keys, key), key, row)

    def plan_note(self, row: Row) -> Insertion:
        """A note goes after the newest message shown (and after the notes before it)."""
        key = (float(self._newest), next(self._order))
        return Insertion(bisect.bisect(self._keys, key), key, row)

    def plan_beginning(self, row: Row) -> Insertion:
        """A note above every message (the room's beginning)."""
        key = (0.0, next(self._order))
        return Insertion(bisect.bisect(self._keys, key), key, row)

    def replace(self, key: Key, row: Row) -> int:
        """Put `row` in place of the note applied with `key`; return its index."""
        index = bisect.bisect_left(self._keys, key)
        assert self._keys[index] == key and self._rows[index].message_id is None
        self._rows[index] = row
        return index

    def index_of_message(self, message_id: int) -> int | None:
        """Where the message `message_id` is shown (None: it is not)."""
        if message_id not in self._ids:
            return None
        return bisect.bisect_left(self._keys, (float(message_id), 0))

    def replace_message(self, row: Row) -> int:
        """Put `row` in place of the message shown with its id; return its index."""
        assert row.message_id is not None and row.kind is Kind.MESSAGE
        index = self.index_of_message(row.message_id)
        assert index is not None
        self._rows[index] = row
        return index

    def plan_pending(self, row: Row) -> Insertion:
        """A line on its way goes at the very bottom, after the lines sent before it."""
        key = (math.inf, next(self._order))
        return Insertion(len(self._keys), key, row)

    def apply(self, insertion: Insertion) -> int:
        """Insert a planned row; return a token for it (used for pending lines)."""
        self._keys.insert(insertion.index, insertion.key)
        self._rows.insert(insertion.index, insertion.row)
        message_id = insertion.row.message_id
        if message_id is not None:
            self._ids.add(message_id)
            self._newest = max(self._newest, message_id)
        token = insertion.key[1]
        if insertion.row.kind is Kind.PENDING:
            self._pending[token] = insertion.key
        return token

    def index_of_pending(self, token: int) -> int | None:
        key = self._pending.get(token)
        return None if key is None else bisect.bisect_left(self._keys, key)

    def remove_pending(self, token: int) -> None:
        index = self.index_of_pending(token)
        assert index is not None
        del self._keys[index]
        del self._rows[index]
        del self._pending[token]
