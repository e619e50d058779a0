"""What a connection keeps of the messages the daemon showed it: which it has shown, the
newest of them (where a login asks to start from), and the history a login sent, held
until that history's end (`ready`) so that it is shown as one `History`.

A message is shown once whatever the daemon sends again (a resumed session's history
overlapping what came live, a message of this client's own that a lost session stored),
and a login after a lost session asks only for what came after the newest one shown. A
history held when its session is lost stays, and is shown with the next login's; one
held when the connection ends is shown as it is, cut short.
"""

from __future__ import annotations

from collections import deque

from ..events import ChatMessage, History
from .messages import SeenIds

SEEN_MEMORY = 20_000
"""Message ids within this many of the newest one seen are remembered, so that none of
those messages is shown twice (`SeenIds`); a history holds its newest this many."""


class SeenMessages:
    """The messages a connection has been shown (see the module docstring)."""

    __slots__ = ("_asked", "_first_since", "_held", "_held_cut", "_ids", "_whole", "newest")

    def __init__(self) -> None:
        self._ids = SeenIds(SEEN_MEMORY)
        self.newest = 0
        """The newest message id shown or taken as shown (`remember`, `start_from`), or
        the newest a history's end said it chose among."""
        self._first_since: int | None = None
        """The `since` the first login asked with (`start_from`)."""
        self._held: deque[ChatMessage] = deque(maxlen=SEEN_MEMORY)
        """The history of a login, until its end: the newest `SEEN_MEMORY` of it."""
        self._held_cut = False
        """Older messages of the held history were let go to keep the newest."""
        self._whole = False
        """A login's history has come whole (its `ready` came) at least once."""
        self._asked: tuple[int | None] | None = None
        """The `since` of the login welcomed last, until its history has come whole."""

    def start_from(self, since: int | None) -> None:
        """The first login shows what came after message `since` (None: the daemon's
        choice), and asks so again until its history has come whole."""
        if since is not None:
            self.newest = since
        self._first_since = since

    def since(self, resuming: bool) -> int | None:
        """The `since` a login asks with: after the newest message shown (0 while
        `resuming` with none shown: all the daemon has; None otherwise: its choice).
        Until a login's history came whole, the first login's own `since`: asked for all
        after the part that came, the history would bring the private messages it left
        out on purpose. So for a later login too (`history_coming`): the part of its
        history that came may be the newest of what was missed only, and the `ready`
        that was lost the one to say so and where the rest is."""
        if not self._whole:
            return self._first_since
        if self._asked is not None:
            return self._asked[0]
        return self.newest if (resuming or self.newest) else None

    def history_coming(self, since: int | None) -> None:
        """A login that asked with `since` was welcomed: its history comes now, and until
        it has come whole (`end_history`), a login after it asks with `since` again."""
        self._asked = (since,)

    def remember(self, message_id: int) -> bool:
        """Take message `message_id` as shown; whether it had not been. An id is known
        while it is within `SEEN_MEMORY` of the newest (`SeenIds`)."""
        if message_id > self.newest:
            self.newest = message_id
        return self._ids.add(message_id)

    def take(self, message: ChatMessage) -> bool:
        """A message the daemon showed this client (not part of an answer, nor the answer
        to one of its own): whether to show it now, `remember`ing it. Not if it was shown
        before; not if it is of a login's history (`message.history`), which is held for
        that history's end (`end_history`)."""
        message_id = message.id  # as `remember`, inline: this runs for every message
        if message_id > self.newest:
            self.newest = message_id
        if not self._ids.add(message_id):
            return False
        if message.history:
            held = self._held
            self._held_cut |= len(held) == SEEN_MEMORY
            held.append(message)  # beyond its length, the oldest goes
            return False
        return True

    @property
    def held(self) -> int:
        """How many messages of a login's history are held for its end."""
        return len(self._held)

    def end_history(
        self, upto: int | None, more: bool, resumed: bool, gap: int | None = None
    ) -> History:
        """A login's history ended (`ready`): the `History` to show, of the messages held
        in the order they came, with `more` if the daemon said it had more or older ones
        were let go. `upto`, the newest id the daemon chose among, is where a login after
        this one starts, if newer than any shown: that login does not bring the private
        messages of before this one, which this history left out. `gap`: where the
        daemon said what was missed and left out ends (with older ones let go here, not
        before the oldest kept)."""
        if upto is not None and upto > self.newest:
            self.newest = upto
        held = self._held
        if gap is not None and self._held_cut and held:
            gap = max(gap, min(message.id for message in held))
        history = History(
            tuple(held), more or self._held_cut, resumed=resumed, newest=upto or 0, gap=gap
        )
        self._held.clear()
        self._held_cut = False
        self._whole = True
        self._asked = None
        return history

    def cut_off(self, resumed: bool) -> History | None:
        """The connection ends before a history's end: what came of it, as a `History`
        with more to it, or None if nothing is held. Its private messages were
        acknowledged, so they count as delivered: they are shown, not dropped."""
        if not self._held:
            return None
        history = History(tuple(self._held), True, resumed=resumed)
        self._held.clear()
        return history
