"""The password a connection logs in with, and a change of it on its way.

A `change_password` answered makes its new password the one logins use. One whose
answer was lost with its session fails (it is not sent again: checked again, the old
password would be wrong if the first was stored), but the daemon may have stored it, so
that the password this client has no longer logs in: the new one is kept as a fallback,
tried (once) when a login coming back is refused the other.
"""

from __future__ import annotations

from .requests import Handle


class Password:
    """A connection's password (`current`), a change on its way, and the fallback."""

    __slots__ = ("_changing", "current", "fallback", "swapped")

    def __init__(self, password: str) -> None:
        self.current = password
        """The password a login sends."""
        self._changing: tuple[Handle, str] | None = None
        """A `change_password` not yet answered, and its new password."""
        self.fallback: str | None = None
        """The new password of a change whose answer was lost with its session. Tried
        when `current` is refused (`swap`)."""
        self.swapped = False
        """The fallback was swapped in, and not yet welcomed."""

    @property
    def changing(self) -> bool:
        """A `change_password` is on its way, not answered yet."""
        return self._changing is not None

    def change(self, handle: Handle, new: str) -> None:
        """A `change_password` to `new` is on its way, as `handle`; once made, `new` is
        the password."""
        assert self._changing is None
        self._changing = (handle, new)
        handle.add_done_callback(self._changed)

    def _changed(self, handle: Handle) -> None:
        """A `change_password` completed: its new password logs in from now on if made."""
        assert self._changing is not None and self._changing[0] is handle
        if handle.error is None:
            self.current, self.fallback = self._changing[1], None
        self._changing = None

    def change_lost(self) -> Handle | None:
        """The session was lost: a change sent and not answered is the fallback from now,
        and its handle (returned) is to fail. The fallback is set before the handle fails:
        failing, `_changed` leaves it be."""
        if self._changing is None or not self._changing[0].seq:
            return None
        handle, self.fallback = self._changing
        return handle

    def swap(self) -> bool:
        """The password was refused to a login coming back: try the fallback instead, if
        there is one and it was not tried already; say whether."""
        if self.fallback is None or self.swapped:
            return False
        self.current, self.fallback = self.fallback, self.current
        self.swapped = True
        return True

    def welcomed(self) -> None:
        """A login was welcomed: a fallback swapped in was the password stored."""
        if self.swapped:
            self.fallback, self.swapped = None, False
