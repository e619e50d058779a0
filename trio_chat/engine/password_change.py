"""A session changing its account's password: the old one checked as a login's is (the
same throttles and hashing queue: a stolen ticket is no faster a way to guess it), then
the new one hashed, then stored as a `PasswordSet` that expects the hash it replaces.

A change is made only if nothing else changed the account meanwhile: the operator's new
password, lock or unlock (`operator_changes`), or another session's change. Its client
may lose the session on the way; the change then follows that client's next session
(`session_replaced`), unanswered. `ServerEngine` answers once the change is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import wire
from ..records import Account, PasswordSet, same_hash
from ..rules import RuleError, check_changed_password, check_password
from .common import Address, network_of
from .effects import CheckPassword, Effect, HashPassword, Persist
from .guard import BUSY, BUSY_MESSAGE, BUSY_WAIT, HashQueue, LoginGuard
from .notes import LoginRefused, Note
from .sessions import Session, Transport

CHANGED_MEANWHILE = "The password was changed meanwhile; nothing was changed now."

Refuse = Callable[[Session, int, str, str, float | None], None]
"""Answer a request with an error: `(session, seq, code, message, retry_after)`."""


@dataclass(slots=True)
class PasswordChange:
    """One session's change, from its request until its answer."""

    sid: int
    seq: int | None
    """The request's; None once its session was replaced by its client's next one (which
    the change then keeps, unanswered: that client no longer waits for the answer)."""
    address: Address
    account: Account
    """As it was when asked: a change made meanwhile fails this one."""
    new: str = field(repr=False)
    overtaken: bool = False
    """The operator changed the account's password or lock since: not made (a lock and an
    unlock leave the hash as it was, which the comparison of hashes would not see)."""


class PasswordChanges:
    """Every password change a session asked for and was not answered yet."""

    def __init__(
        self,
        *,
        accounts_by_id: dict[int, Account],
        transport: Transport,
        guard: LoginGuard,
        hashing: HashQueue,
        add_job: Callable[[PasswordChange], int],
        effects: list[Effect],
        notes: list[Note],
        refuse: Refuse,
    ) -> None:
        self._by_id = accounts_by_id
        self._transport = transport
        self._guard = guard
        self._hashing = hashing
        self._add_job = add_job
        """Hands out the number the shell reports a check or a hash back with."""
        self._effects = effects
        self._notes = notes
        self._refuse = refuse
        self._storing: dict[int, tuple[PasswordSet, PasswordChange]] = {}
        """Changes being stored, by `id()` of their `PasswordSet`."""
        self._in_flight: dict[int, PasswordChange] = {}
        """Every change not yet answered, by `id()`."""

    def ask(self, session: Session, seq: int, request: wire.ChangePassword, now: float) -> None:
        """A session's `change_password`: counted against its address's and its account's
        allowances, then the old password checked."""
        assert session.account is not None
        account = self._by_id[session.account.id]
        try:
            new = check_changed_password(request.old, request.new)  # before anything counts
        except RuleError as error:
            self._refuse(session, seq, error.code, error.message, None)
            return
        network = network_of(session.address)
        refusal = self._guard.admit(network, account.key, now) if not self._hashing.full else BUSY
        if refusal is not None and refusal.code == "throttled":
            wait = refusal.retry_after
            message = f"Too many wrong passwords; wait {max(1, round(wait))} s before trying again."
            self._refuse(session, seq, "throttled", message, wait)
            return
        if refusal is not None:
            self._refuse(session, seq, "busy", BUSY_MESSAGE, BUSY_WAIT)
            return
        change = PasswordChange(session.sid, seq, session.address, account, new)
        self._in_flight[id(change)] = change
        session.busy += 1
        try:
            old = check_password(request.old)
        except RuleError:
            self.checked(change, False, now)  # never a password: wrong, unhashed
            return
        work = CheckPassword(self._add_job(change), account.hash_to_check, old)
        self._effects.extend(self._hashing.push(network, work))

    def checked(self, change: PasswordChange, ok: bool, now: float) -> None:
        """The old password was checked: hash the new one, or refuse."""
        account = change.account
        self._guard.finish(network_of(change.address), account.key, ok, now)
        if not ok:
            self._notes.append(LoginRefused(account.name, change.address, "wrong_password"))
            self._refuse_change(change, "Wrong password.")
        elif self._changed_meanwhile(change):
            self._refuse_change(change, CHANGED_MEANWHILE)
        else:
            work = HashPassword(self._add_job(change), change.new)
            self._effects.extend(self._hashing.push(network_of(change.address), work))

    def hashed(self, change: PasswordChange, password_hash: str) -> None:
        """The new password was hashed: store it, unless the account changed meanwhile."""
        if self._changed_meanwhile(change):
            self._refuse_change(change, CHANGED_MEANWHILE)  # the operator's, say
            return
        current = self._by_id[change.account.id]
        # Locked or not as it is then; made only if nothing else changed it first.
        op = PasswordSet(current.id, password_hash, expect=current.password_hash)
        self._storing[id(op)] = (op, change)
        self._effects.append(Persist(op))

    def _changed_meanwhile(self, change: PasswordChange) -> bool:
        current = self._by_id.get(change.account.id)  # None: the operator removed it
        return (
            current is None
            or change.overtaken
            or not same_hash(current.password_hash, change.account.password_hash)
        )

    def _refuse_change(self, change: PasswordChange, message: str) -> None:
        self._release(change)
        self.tell_refused(change, message)

    def tell_refused(self, change: PasswordChange, message: str) -> None:
        """Answer a change not made (`wrong_password`), if its session still waits."""
        self._answer(change, "wrong_password", message)

    def operator_changes(self, account_id: int) -> None:
        """The operator asked to change the account's password or lock: the account's
        changes not yet on their way to the disk are not made (those on their way are
        stored first, and the operator's change applies to what they leave)."""
        storing = {id(change) for _op, change in self._storing.values()}
        for change in self._in_flight.values():
            if change.account.id == account_id and id(change) not in storing:
                change.overtaken = True

    def session_replaced(self, old_sid: int, new: Session) -> None:
        """`new` is the next session of the client whose session `old_sid` was lost (ended
        or not): a change that one asked for is made for it (the account's other
        sessions end, not it), unanswered (that client gave the answer up)."""
        assert new.account is not None
        for change in self._in_flight.values():
            if change.sid == old_sid and change.account.id == new.account.id:
                change.sid, change.seq = new.sid, None
                new.busy += 1

    def stored(self, op: PasswordSet) -> PasswordChange | None:
        """The change a session asked for that `op` stores, if it is one (done with: its
        session's `busy` count released)."""
        found = self._storing.pop(id(op), None)
        if found is None or found[0] is not op:
            return None
        self._release(found[1])
        return found[1]

    def failed(self, op: PasswordSet, message: str) -> None:
        """`op` could not be stored: if a session asked for it, tell it so."""
        change = self.stored(op)
        if change is not None:
            self._answer(change, "storage_failed", message)

    def _release(self, change: PasswordChange) -> None:
        """The change is over: its session is no longer busy with it."""
        self._in_flight.pop(id(change), None)
        session = self._transport.by_sid.get(change.sid)
        if session is not None:
            session.busy -= 1

    def _answer(self, change: PasswordChange, code: str, message: str) -> None:
        session = self._transport.by_sid.get(change.sid)
        if session is not None and change.seq is not None:
            self._refuse(session, change.seq, code, message, None)
