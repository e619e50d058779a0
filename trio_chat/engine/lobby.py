"""The lobby: requests outside a session (register, login) and what guards them.

Every request is answered once: a request sent again while it is being worked on is
answered `pending`, one sent again after its answer gets the same answer (the reply
cache). Nothing is sent to an address that has not shown it receives beyond 3 times
what it sent (the byte budget of unvalidated addresses), so the daemon cannot be used to
amplify a spoofed flood.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .. import wire
from ..limits import FailureThrottle, KeyedBuckets
from ..records import Account
from ..rules import RuleError, check_name, check_password, name_key
from .common import Address, Outbox, iso_time, round_up
from .config import ServerConfig
from .effects import CheckPassword, Effect, HashPassword, JobTable, Persist
from .notes import LoginRefused, Note, Registered, RegistrationRefused

TOO_MANY_SESSIONS = "Too many sessions from your address; close one and try again."


@dataclass(slots=True)
class _Registration:
    address: Address
    rid: str
    name: str
    key: str


@dataclass(slots=True)
class LoginAttempt:
    """A login whose password is being checked; `open_session` takes it once it passed."""

    address: Address
    rid: str
    account: Account
    since: int | None
    quiet: bool


@dataclass(slots=True)
class _Reply:
    data: bytes
    expires: float
    sid: int | None
    """The session a welcome opened."""


@dataclass(slots=True)
class _AddressBudget:
    received: int = 0
    sent: int = 0


OpenSession = Callable[[LoginAttempt, float, float], wire.Welcome]
"""Open a session for a login that passed `(attempt, now, wall)`; return the welcome."""
SessionsFull = Callable[[Address], bool]


class Lobby:
    """Registrations, logins, their answers, and the budget of unproven addresses."""

    def __init__(
        self,
        config: ServerConfig,
        accounts: dict[str, Account],
        next_account_id: int,
        effects: list[Effect],
        outbox: Outbox,
        stats: dict[str, int],
        jobs: JobTable[_Registration | LoginAttempt],
        notes: list[Note],
    ) -> None:
        self.config = config
        self.accounts = accounts
        self._next_account_id = next_account_id
        self._effects = effects
        self._outbox = outbox
        self._stats = stats
        self._jobs = jobs
        self._notes = notes
        self.open_session: OpenSession | None = None
        self.sessions_full: SessionsFull = lambda _address: False
        self.welcome_resent: Callable[[int, float], None] = lambda _sid, _now: None
        self._reserved_names: set[str] = set()
        self._in_progress: set[tuple[Address, str]] = set()
        self._storing: dict[int, _Registration] = {}
        self._replies: OrderedDict[tuple[Address, str], _Reply] = OrderedDict()
        self._budgets: OrderedDict[Address, _AddressBudget] = OrderedDict()
        self._register_limit = KeyedBuckets(config.register_rate, config.register_burst)
        throttle = (config.login_free_failures, config.login_delay, config.login_delay_max)
        self._account_failures = FailureThrottle(*throttle)
        self._address_failures = FailureThrottle(*throttle)

    # --- requests ---------------------------------------------------------------------------

    def receive_request(
        self, request: wire.Register | wire.Login, size: int, address: Address, now: float
    ) -> None:
        """Handle a register or login datagram of `size` bytes from `address`."""
        self.count_received(address, size)
        cached = self._cached_reply(address, request.rid, now)
        if cached is not None:
            self._send_unvalidated(address, cached.data)
            if cached.sid is not None:
                self.welcome_resent(cached.sid, now)
        elif (address, request.rid) in self._in_progress:
            self.reply(address, wire.Pending(rid=request.rid))
        elif isinstance(request, wire.Register):
            self._on_register(request, address, now)
        else:
            self._on_login(request, address, now)

    def _on_register(self, request: wire.Register, address: Address, now: float) -> None:
        try:
            name = check_name(request.name)
            password = check_password(request.password)
        except RuleError as error:
            self._refuse(address, request.rid, now, error.code, error.message, note=request)
            return
        key = name_key(name)
        existing = self.accounts.get(key)
        if existing is not None and existing.rid == request.rid:
            # Stored, but the answer was lost with a daemon that stopped: answer again.
            reply = wire.Registered(rid=request.rid, name=existing.name)
            self._finish_request(address, request.rid, reply, now)
            return
        if existing is not None or key in self._reserved_names:
            message = f"The name {name!r} is taken; choose another."
            self._refuse(address, request.rid, now, "name_taken", message, note=request)
            return
        # Counted only now, before the hashing it guards: a refused name costs nothing.
        wait = self._register_limit.take(address[0], now)
        if wait > 0:
            message = "Too many registrations from your address; try again later."
            self._refuse(
                address, request.rid, now, "too_many_registrations", message, wait, note=request
            )
            return
        self._reserved_names.add(key)
        job = self._jobs.add(_Registration(address, request.rid, name, key))
        self._in_progress.add((address, request.rid))
        self._effects.append(HashPassword(job, password))

    def password_hashed(self, job: int, password_hash: str, wall: float) -> None:
        """The shell hashed a new account's password: store the account."""
        registration = self._jobs.pop(job)
        assert isinstance(registration, _Registration)
        account = Account(
            id=self._next_account_id,
            name=registration.name,
            key=registration.key,
            password_hash=password_hash,
            created=iso_time(wall),
            rid=registration.rid,
        )
        self._next_account_id += 1
        self._storing[account.id] = registration
        self._effects.append(Persist(account))

    def account_committed(self, account: Account, now: float) -> None:
        registration = self._storing.pop(account.id)
        self._reserved_names.discard(account.key)
        self.accounts[account.key] = account
        self._notes.append(Registered(account.name, registration.address))
        reply = wire.Registered(rid=registration.rid, name=account.name)
        self._finish_request(registration.address, registration.rid, reply, now)

    def account_failed(self, account: Account, now: float, message: str) -> None:
        registration = self._storing.pop(account.id)
        self._reserved_names.discard(account.key)
        reply = wire.ErrorReply(code="storage_failed", message=message, rid=registration.rid)
        self._finish_request(registration.address, registration.rid, reply, now)

    def _on_login(self, request: wire.Login, address: Address, now: float) -> None:
        account = self.accounts.get(name_key(request.name))
        if account is None:
            message = f"There is no account named {request.name!r}."
            self._refuse(address, request.rid, now, "unknown_user", message, note=request)
            return
        wait = max(
            self._account_failures.retry_after(account.key, now),
            self._address_failures.retry_after(address[0], now),
        )
        if wait > 0:
            message = "Too many failed logins; wait a little before trying again."
            self._refuse(address, request.rid, now, "throttled", message, wait, note=request)
            return
        if self.sessions_full(address):
            self._refuse(
                address, request.rid, now, "too_many_sessions", TOO_MANY_SESSIONS, note=request
            )
            return
        try:
            # The form that was hashed at registration (NFC), whatever form this one came in.
            password = check_password(request.password)
        except RuleError:
            # No such password was ever accepted: wrong, without spending a hash on it.
            self._wrong_password(account, address, request.rid, now)
            return
        attempt = LoginAttempt(address, request.rid, account, request.since, request.quiet)
        job = self._jobs.add(attempt)
        self._in_progress.add((address, request.rid))
        self._effects.append(CheckPassword(job, account.password_hash, password))

    def password_checked(self, job: int, ok: bool, now: float, wall: float) -> None:
        """The shell checked a login's password."""
        attempt = self._jobs.pop(job)
        assert isinstance(attempt, LoginAttempt)
        address, account = attempt.address, attempt.account
        if not ok:
            self._wrong_password(account, address, attempt.rid, now)
            return
        self._account_failures.succeeded(account.key)
        self._address_failures.succeeded(address[0])
        if self.sessions_full(address):
            self._notes.append(LoginRefused(account.name, address, "too_many_sessions"))
            self._refuse(address, attempt.rid, now, "too_many_sessions", TOO_MANY_SESSIONS)
            return
        assert self.open_session is not None
        welcome = self.open_session(attempt, now, wall)
        self._finish_request(address, attempt.rid, welcome, now)

    def _wrong_password(self, account: Account, address: Address, rid: str, now: float) -> None:
        self._account_failures.failed(account.key, now)
        self._address_failures.failed(address[0], now)
        self._notes.append(LoginRefused(account.name, address, "wrong_password"))
        self._refuse(address, rid, now, "wrong_password", "Wrong password.")

    def _refuse(
        self,
        address: Address,
        rid: str,
        now: float,
        code: str,
        message: str,
        retry_after: float | None = None,
        *,
        note: wire.Register | wire.Login | None = None,
    ) -> None:
        """Answer a request with an error (remembered like any answer); with `note`, tell
        the operator which request was refused."""
        if retry_after is not None:
            retry_after = round_up(retry_after)
        if isinstance(note, wire.Register):
            self._notes.append(RegistrationRefused(note.name, address, code, retry_after))
        elif isinstance(note, wire.Login):
            self._notes.append(LoginRefused(note.name, address, code, retry_after))
        reply = wire.ErrorReply(code=code, message=message, rid=rid, retry_after=retry_after)
        self._finish_request(address, rid, reply, now)

    # --- answers and the budget of unproven addresses ------------------------------------------

    def count_received(self, address: Address, size: int) -> None:
        """`size` bytes came from `address`: it may be sent three times as much."""
        budget = self._budgets.pop(address, None) or _AddressBudget()
        budget.received += size
        self._budgets[address] = budget
        if len(self._budgets) > self.config.tracked_addresses:
            self._budgets.popitem(last=False)

    def reply(self, address: Address, reply: wire.ServerDatagram) -> None:
        """Answer an address outside a session, within its budget."""
        self._send_unvalidated(address, wire.encode(reply))

    def _send_unvalidated(self, address: Address, data: bytes) -> None:
        """Send to an address that has not proven it receives: at most 3x what it sent."""
        budget = self._budgets.get(address)
        allowed = 0 if budget is None else self.config.amplification_factor * budget.received
        if budget is None or budget.sent + len(data) > allowed:
            self._stats["unsent_for_amplification"] += 1
            return
        budget.sent += len(data)
        self._outbox.append((data, address))

    def _finish_request(
        self, address: Address, rid: str, reply: wire.ServerDatagram, now: float
    ) -> None:
        data = wire.encode(reply)
        self._in_progress.discard((address, rid))
        replies = self._replies
        sid = reply.sid if isinstance(reply, wire.Welcome) else None
        replies[(address, rid)] = _Reply(data, now + self.config.reply_cache_seconds, sid)
        while replies:
            oldest = next(iter(replies.values()))
            if oldest.expires > now and len(replies) <= self.config.tracked_addresses:
                break
            replies.popitem(last=False)
        self._send_unvalidated(address, data)

    def _cached_reply(self, address: Address, rid: str, now: float) -> _Reply | None:
        cached = self._replies.get((address, rid))
        if cached is None or cached.expires <= now:
            return None
        return cached
