"""The lobby: opening channels (`KEY_REQUEST`, `INIT`), and what a channel may do before
it is logged in (`register`, `login`, `resume`), with what guards them. A logged-in
session's password change (`password_change`) shares its queue of password work and its
allowances, and so is reached through it (`Lobby.changes`).

Every answer to a first flight is smaller than the 1200 bytes it answers, so the daemon
cannot be used to amplify a spoofed flood; a handshake costs a Diffie-Hellman, so once
many channels are open and unproven (in all, or from one network), an `INIT` must first
echo a cookie that proves its address (`RETRY`), and none of it keeps state for the
address that sent it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .. import wire
from ..limits import FailureThrottle, KeyedBuckets, RecentKeys, TokenBucket
from ..names import ConfusableIndex
from ..records import Account
from ..rules import (
    RuleError,
    check_name,
    check_password,
    name_held,
    name_key,
    name_taken,
    no_account_held,
)
from ..secure import Cookies, DaemonKeys, SecureError, password_mark, respond
from .bans import ban_wait, banned_sentence
from .common import Address, Outbox, iso_time, network_of, round_up
from .config import ServerConfig
from .effects import NO_ACCOUNT, CheckPassword, Effect, HashPassword, JobTable, Persist
from .guard import BUSY, BUSY_MESSAGE, BUSY_WAIT, HashQueue, LoginGuard
from .notes import LoginRefused, Note, Registered, RegistrationRefused
from .password_change import PasswordChange, PasswordChanges
from .sessions import Session, Transport

TOO_MANY_SESSIONS = "Too many sessions from your address; close one and try again."
TOO_MANY_HANDSHAKES = "Too many connections from your address at once; try again in a moment."
BAD_INITS_PER_SECOND = 64
"""`INIT`s that do not decrypt (each costs a Diffie-Hellman) before cookies are asked."""
REPLAY_MEMORY = 120.0
"""Seconds an `INIT`'s ephemeral key is remembered, so that a replay of it is dropped."""


FROM_YOUR_ADDRESS = "Too many registrations from your address; try again later."
ACCOUNT_LOCKED = "This account is locked by the daemon's operator; ask them to unlock it."


@dataclass(slots=True)
class _Registration:
    sid: int | None
    """The session to answer; None for the operator's (`Lobby.add_account`)."""
    seq: int
    address: Address | None
    """None for the operator's."""
    rid: str | None
    name: str
    key: str


@dataclass(slots=True)
class LoginAttempt:
    """A login whose password is being checked; `log_in` takes it once it passed."""

    sid: int
    seq: int
    address: Address
    account: Account | None
    """None for a name that has no account: checked all the same, then refused."""
    request: wire.Login


LogIn = Callable[
    [Session, int, Account, wire.Login | wire.Resume, float, float, float | None], None
]
"""Let a connection in as an account: `(session, seq, account, request, now, wall,
expires)`; `expires` is when the ticket a `resume` used expires (None for a password)."""
Reply = Callable[[Session, bytes], None]
"""Queue an encoded frame on a connection."""


class Lobby:
    """Channels opening, accounts created, logins checked; see the module docstring."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        keys: DaemonKeys,
        accounts: dict[str, Account],
        accounts_by_id: dict[int, Account],
        next_account_id: int,
        held: list[tuple[str, str]],
        transport: Transport,
        effects: list[Effect],
        outbox: Outbox,
        stats: dict[str, int],
        jobs: JobTable[_Registration | LoginAttempt | PasswordChange],
        notes: list[Note],
        reply: Reply,
    ) -> None:
        self.config = config
        self.keys = keys
        self.accounts = accounts
        self._by_id = accounts_by_id
        self._next_account_id = next_account_id
        self._transport = transport
        self._effects = effects
        self._outbox = outbox
        self._stats = stats
        self._jobs = jobs
        self._notes = notes
        self._reply = reply
        self.log_in: LogIn | None = None
        self._cookies = Cookies()
        self._bad_inits = TokenBucket(BAD_INITS_PER_SECOND, BAD_INITS_PER_SECOND)
        self._recent_inits = RecentKeys(config.tracked_addresses, REPLAY_MEMORY)
        self._handshakes = KeyedBuckets(
            config.handshake_rate, config.handshake_burst, config.tracked_addresses
        )
        self._registering: dict[str, _Registration] = {}
        """Registrations being hashed or stored, by name key: their names are taken until
        stored or failed."""
        self.held: dict[str, str] = dict((key, name) for name, key in held)
        """Removed accounts' names, by key: no registration takes one (a newcomer would
        pass for the author of their history), nor one too like it; the operator may give
        one out again (`add_account`)."""
        self._confusables = ConfusableIndex()
        for account in accounts.values():
            self._confusables.add(account.name, account.key)
        for key, name in self.held.items():
            self._confusables.add(name, key)
        self._storing: dict[int, _Registration] = {}
        self._register_limit = KeyedBuckets(config.register_rate, config.register_burst)
        self._register_total = TokenBucket(config.register_rate_total, config.register_burst_total)
        self._name_lookups = FailureThrottle(
            config.login_free_failures,
            config.login_delay,
            config.login_delay_max,
            capacity=config.tracked_addresses,
        )
        """Registrations that told their network whether a name exists without creating
        it: as many as its failed logins may be, so that registering tests names no faster
        than logging in (whispers are held to the message rate instead)."""
        self._guard = LoginGuard(config)
        self._hashing = HashQueue(config.hash_slots, config.hash_queue_limit)
        self.changes = PasswordChanges(
            accounts_by_id=accounts_by_id,
            transport=transport,
            guard=self._guard,
            hashing=self._hashing,
            add_job=jobs.add,
            effects=effects,
            notes=notes,
            refuse=self._refuse,
        )
        """Sessions changing their password: checked and hashed in the same queue, and
        under the same allowances, as logins."""

    # --- first flights ------------------------------------------------------------------------

    def _answer(self, address: Address, data: bytes, asked: int) -> None:
        """Answer a datagram of `asked` bytes outside a channel: never with more bytes."""
        if len(data) <= asked:
            self._outbox.append((data, address))
        else:
            self._stats["unsent_for_amplification"] += 1

    def refuse_first_flight(self, address: Address, error: wire.WireError, asked: int) -> None:
        """A first flight that could not be read: say why, if the answer is small enough."""
        self._answer(address, wire.refused_datagram(error.code, error.message), asked)

    def turn_away(self, address: Address, asked: int, until: float, wall: float) -> None:
        """A first flight from a network the operator banned until Unix time `until`
        (`math.inf`: for good): say so, and when it ends, if the answer is small enough
        (it is, for any first flight a client sends)."""
        refused = wire.refused_datagram("banned", banned_sentence(until), ban_wait(until, wall))
        self._answer(address, refused, asked)

    def key_request(self, request: wire.KeyRequest, address: Address) -> None:
        self._stats["keys_sent"] += 1
        # Asked, whether registrations are taken: one byte more, from the configuration
        # alone (nothing looked up or counted), so that a client asks for no password the
        # daemon would refuse to register. A `register` is still answered for itself.
        told = self.config.registrations if request.asks_registrations else None
        answer = wire.key_datagram(self.keys.public, registrations=told)
        self._answer(address, answer, wire.FIRST_FLIGHT_BYTES)

    def init(self, init: wire.Init, address: Address, now: float) -> None:
        """A client's first handshake message: answer it, or ask for proof of address."""
        asked = wire.FIRST_FLIGHT_BYTES
        known = self._transport.answered(address, init.client_index)
        if known is not None:
            self._answer(address, known.response, asked)  # our RESPONSE was lost: again
            return
        if self._recent_inits.seen(init.message[: wire.PUBLIC_KEY_BYTES], now):
            # The same ephemeral key again, not the lost-RESPONSE case above: a replay.
            self._stats["replayed_inits"] += 1
            return
        cookie_due = (
            self._transport.unproven >= self.config.unproven_before_retry
            or self._transport.waiting_from(address) >= self.config.unproven_per_address
            or self._bad_inits.wait(now) > 0
        )
        cookie_checked = cookie_due and self._cookies.check(
            init.cookie, address, init.client_index, now
        )
        if cookie_due and not cookie_checked:
            # Busy with strangers: nothing is spent on this one until it shows it receives.
            self._stats["retries_sent"] += 1
            cookie = self._cookies.make(address, init.client_index, now)
            self._answer(address, wire.retry_datagram(init.client_index, cookie), asked)
            return
        if self._transport.full(address):
            refused = wire.refused_datagram("too_many_sessions", TOO_MANY_SESSIONS)
            self._answer(address, refused, asked)
            return
        if len(self._transport) >= self.config.max_connections:
            sorry = "The daemon has as many sessions as it takes; try again later."
            self._answer(address, wire.refused_datagram("busy", sorry, 5.0), asked)
            return
        # The last check before the key exchange. Spent by a key exchange that opens a
        # channel, or that fails for an INIT whose cookie proved its address: an INIT
        # spoofed from someone's address that does not decrypt spends nothing (those are
        # bounded by `_bad_inits`, then cookies), and one that does stops at the cookie
        # once its address has `unproven_per_address` channels waiting.
        network = network_of(address)
        wait = self._handshakes.wait(network, now)
        if wait > 0:
            # Answered, smaller than the INIT: its client waits and sends it again.
            self._stats["handshakes_refused"] += 1
            refused = wire.refused_datagram("busy", TOO_MANY_HANDSHAKES, round_up(wait))
            self._answer(address, refused, asked)
            return
        index = self._transport.new_index()
        token = self._transport.token_for(index)
        try:
            response, channel = respond(self.keys.static_private, init, index, token)
        except SecureError:
            # Not encrypted to our key: an old key of ours, or a client mistaken about who
            # we are. Say which key is ours; the client decides whether to trust it.
            self._stats["bad_handshakes"] += 1
            self._bad_inits.take(now)  # each cost a DH: many, and cookies come first
            if cookie_checked:  # sent from its address for sure: charged to it
                self._handshakes.take(network, now)
            self._answer(address, wire.key_datagram(self.keys.public), asked)
            return
        self._handshakes.take(network, now)
        self._recent_inits.add(init.message[: wire.PUBLIC_KEY_BYTES], now)
        self._stats["handshakes"] += 1
        self._transport.open(
            index, channel, address, response, now, asked, cookie_checked=cookie_checked
        )
        self._answer(address, response, asked)

    # --- frames before a login --------------------------------------------------------------------

    def frame(
        self, session: Session, seq: int, frame: wire.ClientFrame, now: float, wall: float
    ) -> None:
        """A frame on a channel not logged in: only these may come before a login."""
        if isinstance(frame, wire.Register):
            self._on_register(session, seq, frame, now)
        elif isinstance(frame, wire.Login):
            self._on_login(session, seq, frame, now)
        elif isinstance(frame, wire.Resume):
            self._on_resume(session, seq, frame, now, wall)
        else:
            raise RuleError("bad_request", "Log in first.")

    def _refuse(
        self,
        session: Session,
        seq: int,
        code: str,
        message: str,
        retry_after: float | None = None,
        *,
        no_registrations: bool = False,
    ) -> None:
        if retry_after is not None:
            retry_after = round_up(retry_after)
        frame = wire.ErrorFrame(
            code=code,
            message=message,
            re=seq,
            retry_after=retry_after,
            no_registrations=no_registrations,
        )
        self._reply(session, wire.encode(frame))

    def _on_register(self, session: Session, seq: int, request: wire.Register, now: float) -> None:
        address = session.address
        if self._sent_again(session, seq, request):
            return
        if not self.config.registrations:
            # Before the name is looked at, or even checked: the answer tells nothing of it.
            code = "registrations_closed"
            self._notes.append(RegistrationRefused(request.name, address, code))
            self._refuse(session, seq, code, wire.REGISTRATIONS_CLOSED)
            return
        try:
            name = check_name(request.name)
            password = check_password(request.password)
        except RuleError as error:
            self._notes.append(RegistrationRefused(request.name, address, error.code))
            self._refuse(session, seq, error.code, error.message)
            return
        key = name_key(name)
        if self._hashing.full:
            # Before the name is looked at, taken or free: `busy` says nothing about it.
            self._busy(session, seq, now)
            return
        network = network_of(address)
        wait = self._name_lookups.retry_after(network, now)
        if wait > 0:
            # Before the name is looked at: the answer tells nothing about it.
            self._refuse_registration(session, seq, request.name, FROM_YOUR_ADDRESS, wait)
            return
        taken = self._taken(name, key)
        if taken is not None:
            self._name_lookups.failed(network, now)
            self._notes.append(RegistrationRefused(request.name, address, taken.code))
            self._refuse(session, seq, taken.code, taken.message)
            return
        # Counted only now, before the hashing it guards: a taken name does not spend them,
        # nor does one refused by either limit spend the other's.
        wait = self._register_limit.wait(network, now)
        message = FROM_YOUR_ADDRESS
        if wait <= 0:
            wait = self._register_total.wait(now)
            message = "Too many registrations at the moment; try again later."
        if wait <= 0:
            self._register_limit.take(network, now)
            self._register_total.take(now)
        else:
            # This answer says the name is free: it counts as a lookup.
            self._name_lookups.failed(network, now)
            self._refuse_registration(session, seq, request.name, message, wait)
            return
        self._name_lookups.succeeded(network)
        registration = _Registration(session.sid, seq, address, request.rid, name, key)
        self._registering[key] = registration
        self._confusables.add(name, key)
        job = self._jobs.add(registration)
        session.busy += 1
        self._effects.extend(self._hashing.push(network_of(address), HashPassword(job, password)))

    def _sent_again(self, session: Session, seq: int, request: wire.Register) -> bool:
        """Whether `request` is a registration made, or being made, sent again (the same
        `rid`): if so, it is answered as the first is (`registered`)."""
        try:
            key = name_key(check_name(request.name))
            check_password(request.password)
        except RuleError:
            return False  # no registration is made under what the rules refuse
        existing = self.accounts.get(key)
        if existing is not None and existing.rid == request.rid:
            # Stored, but the answer was lost with a daemon that stopped: answer again.
            self._reply(session, wire.encode(wire.Registered(re=seq, name=existing.name)))
            return True
        pending = self._registering.get(key)
        if pending is not None and pending.rid == request.rid:
            # Sent again (its channel was lost) while the first is hashed or stored: the
            # same registration, whose answer now goes here.
            self._answer_here(pending, session, seq)
            return True
        return False

    def _taken(self, name: str, key: str, *, operator: bool = False) -> RuleError | None:
        """`name_taken` if an account, or a registration on its way, has the name (`key`
        its key) or one it could be mistaken for, or a removed account holds it (but for
        the `operator`, who may give it out again)."""
        if key in self.accounts or key in self._registering:
            return name_taken(name)
        if key in self.held and not operator:
            # Said so: a login of it is told no account has it, and `name_taken` alone
            # would have a client offer to log in to it.
            return name_held(name)
        like = self._confusables.clash(name)
        return None if like is None else name_taken(name, self._shown_name(like))

    def free_name(self, name: str) -> tuple[str, str]:
        """`name` as an account would have it, with its key, if the operator may make an
        account of it now; else `RuleError` (`invalid_name`, `name_taken`), as
        `add_account` would raise."""
        name = check_name(name)
        key = name_key(name)
        taken = self._taken(name, key, operator=True)
        if taken is not None:
            raise taken
        return name, key

    def add_account(self, name: str, password_hash: str, wall: float) -> Account:
        """Make an account for the operator (`trio-chat accounts add`), open to
        registrations or not, with a password the command hashed: stored first (a
        `Persist` effect), then in once `committed`. Its name follows the rules a
        registration's does (`RuleError`: `invalid_name`, `name_taken`)."""
        name, key = self.free_name(name)
        registration = _Registration(None, 0, None, None, name, key)
        self._registering[key] = registration
        self._confusables.add(name, key)
        return self._store_account(registration, password_hash, wall)

    def _answer_here(self, registration: _Registration, session: Session, seq: int) -> None:
        """Send a registration's answer to `session`'s request `seq` instead."""
        assert registration.sid is not None  # the operator's has no `rid` to send again
        earlier = self._transport.by_sid.get(registration.sid)
        if earlier is not None:
            earlier.busy -= 1
        registration.sid, registration.seq = session.sid, seq
        session.busy += 1

    def _refuse_registration(
        self, session: Session, seq: int, name: str, message: str, wait: float
    ) -> None:
        code = "too_many_registrations"
        self._notes.append(RegistrationRefused(name, session.address, code, round_up(wait)))
        self._refuse(session, seq, code, message, wait)

    def _busy(self, session: Session, seq: int, now: float) -> None:
        self._stats["busy_refused"] += 1
        # The client sends it again shortly: its channel keeps its time to log in.
        self._time_to_log_in(session, now)
        self._refuse(session, seq, "busy", BUSY_MESSAGE, BUSY_WAIT)

    def _time_to_log_in(self, session: Session, now: float) -> None:
        """The channel has its time to log in (`login_timeout`) from `now`, at least."""
        session.idle_check_at = max(
            session.idle_check_at, float(math.ceil(now + self.config.login_timeout))
        )

    def password_hashed(self, job: int, password_hash: str, wall: float) -> None:
        """The shell hashed a new account's password (or a new password): store it."""
        self._effects.extend(self._hashing.done())
        registration = self._jobs.pop(job)
        if isinstance(registration, PasswordChange):
            self.changes.hashed(registration, password_hash)
            return
        assert isinstance(registration, _Registration)
        assert registration.address is not None  # the operator's password came hashed
        until = self._transport.bans.banned_until(registration.address[0], wall)
        if until is not None:
            # Its network was turned away while the password was hashed: no account is
            # made, its name is free again, and its session, if still open, is told why.
            self._registering.pop(registration.key, None)
            self._confusables.remove(registration.name, registration.key)
            refused = wire.ErrorFrame(
                code="banned",
                message=banned_sentence(until),
                re=registration.seq,
                retry_after=ban_wait(until, wall),
            )
            self._answer_job(registration.sid, refused)
            return
        self._store_account(registration, password_hash, wall)

    def _store_account(
        self, registration: _Registration, password_hash: str, wall: float
    ) -> Account:
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
        return account

    def account_committed(self, account: Account) -> None:
        registration = self._storing.pop(account.id)
        self._registering.pop(account.key, None)
        held = self.held.pop(account.key, None)
        if held is not None:  # given out again: the removed account's hold is gone
            self._confusables.remove(held, account.key)
        self.accounts[account.key] = account
        self._by_id[account.id] = account
        if registration.address is not None:  # the operator's is logged by its command
            self._notes.append(Registered(account.name, registration.address))
        self._answer_job(registration.sid, wire.Registered(re=registration.seq, name=account.name))

    def account_failed(self, account: Account, message: str) -> None:
        registration = self._storing.pop(account.id)
        self._registering.pop(account.key, None)
        self._confusables.remove(account.name, account.key)
        frame = wire.ErrorFrame(code="storage_failed", message=message, re=registration.seq)
        self._answer_job(registration.sid, frame)

    def _shown_name(self, key: str) -> str:
        """The display name of an account, of a registration not yet stored, or of a
        removed account's name held."""
        account = self.accounts.get(key)
        if account is not None:
            return account.name
        registration = self._registering.get(key)
        return registration.name if registration is not None else self.held.get(key, key)

    @property
    def queued_checks(self) -> int:
        """Password checks and hashes waiting for a hashing thread."""
        return self._hashing.waiting

    def name_collisions(self) -> list[tuple[str, str]]:
        """Pairs of existing accounts whose names could be mistaken for each other (they
        keep working; an operator may want to know)."""
        return [
            (self._shown_name(a), self._shown_name(b)) for a, b in self._confusables.collisions()
        ]

    def _answer_job(self, sid: int | None, frame: wire.Registered | wire.ErrorFrame) -> None:
        session = None if sid is None else self._transport.by_sid.get(sid)
        if session is not None:
            session.busy -= 1
            self._reply(session, wire.encode(frame))

    def _on_login(self, session: Session, seq: int, request: wire.Login, now: float) -> None:
        address = session.address
        # Throttled by the name asked for, whether or not it has an account: the same
        # allowances, the same answers, so a refusal never tells whether a name exists.
        key = name_key(request.name)
        account = self.accounts.get(key)
        if account is not None and self.account_full(account, request.replaces):
            self.refuse_account_full(session, seq, account)  # before any hash is spent
            return
        refusal = (
            self._guard.admit(network_of(address), key, now) if not self._hashing.full else BUSY
        )
        if refusal is not None and refusal.code == "throttled":
            wait = refusal.retry_after
            self._notes.append(LoginRefused(request.name, address, "throttled", round_up(wait)))
            message = f"Too many failed logins; wait {max(1, round(wait))} s before trying again."
            self._refuse(session, seq, "throttled", message, wait)
            return
        if refusal is not None:
            self._busy(session, seq, now)
            return
        attempt = LoginAttempt(session.sid, seq, address, account, request)
        try:
            # The form that was hashed at registration (NFC), whatever form this one came in.
            password = check_password(request.password)
        except RuleError:
            # No such password was ever accepted: wrong, without spending a hash on it.
            self._judge(session, attempt, False, now, 0.0)
            return
        job = self._jobs.add(attempt)
        session.busy += 1
        session.logging_in = True
        # A name with no account is checked against a hash of nothing, at the same cost.
        password_hash = account.hash_to_check if account is not None else NO_ACCOUNT
        work = CheckPassword(job, password_hash, password)
        self._effects.extend(self._hashing.push(network_of(address), work))

    def password_checked(self, job: int, ok: bool, now: float, wall: float) -> None:
        """The shell checked a login's password (or the one a change gave as the old)."""
        self._effects.extend(self._hashing.done())
        attempt = self._jobs.pop(job)
        if isinstance(attempt, PasswordChange):
            self.changes.checked(attempt, ok, now)
            return
        assert isinstance(attempt, LoginAttempt)
        session = self._transport.by_sid.get(attempt.sid)
        if session is not None:
            session.busy -= 1
            session.logging_in = False
        self._judge(session, attempt, ok, now, wall)

    def _judge(
        self, session: Session | None, attempt: LoginAttempt, ok: bool, now: float, wall: float
    ) -> None:
        account, address = attempt.account, attempt.address
        if account is not None:
            # As it is now: the operator may have locked it, given it a new password, or
            # removed it (then as a name no account has) while this one was checked.
            now_as = self._by_id.get(account.id)
            ok = ok and now_as is not None and now_as.same_password(account)
            account = now_as
        ok = ok and account is not None
        self._guard.finish(network_of(address), name_key(attempt.request.name), ok, now)
        if session is None:
            return  # the channel closed meanwhile
        if account is None or not ok or account.locked:
            # However long the check took (or a short idle timeout made the look at its
            # silence come soon), the client may send another login on this channel.
            self._time_to_log_in(session, now)
        if account is None:
            name = attempt.request.name
            self._notes.append(LoginRefused(name, address, "unknown_user"))
            message = f"There is no account named {name!r}."
            if name_key(name) in self.held:
                message = no_account_held(name)  # no client then offers to register it
            # Said, so that no client offers to register it: a register would only
            # tell it too (`registrations_closed`), the password typed twice for nothing.
            closed = not self.config.registrations
            self._refuse(session, attempt.seq, "unknown_user", message, no_registrations=closed)
        elif not ok:
            self._notes.append(LoginRefused(account.name, address, "wrong_password"))
            self._refuse(session, attempt.seq, "wrong_password", "Wrong password.")
        elif account.locked:
            # Told only to whoever has the password: to others it is any account.
            self._notes.append(LoginRefused(account.name, address, "account_locked"))
            self._refuse(session, attempt.seq, "account_locked", ACCOUNT_LOCKED)
        else:
            assert self.log_in is not None
            self.log_in(session, attempt.seq, account, attempt.request, now, wall, None)

    def account_by_id(self, account_id: int) -> Account | None:
        """The account, unless the operator removed it."""
        return self._by_id.get(account_id)

    def account_changed(self, account: Account) -> None:
        """An account changed (its password hash, by the operator or its own session; its
        mute): logins check it as it is from now."""
        self.accounts[account.key] = account
        self._by_id[account.id] = account

    def remove_account(self, account: Account) -> None:
        """The operator removes `account`: no login, ticket or whisper finds it from now
        on, and its name is held (`held`)."""
        del self.accounts[account.key]
        del self._by_id[account.id]
        self.held[account.key] = account.name  # indexed as a look-alike still

    def account_kept(self, account: Account) -> None:
        """The store refused `account`'s removal: it is back as it was."""
        self.held.pop(account.key, None)
        self.accounts[account.key] = account
        self._by_id[account.id] = account

    def account_full(self, account: Account, replaces: int | None = None) -> bool:
        """Whether the account has as many sessions as it may (the one a login replaces
        not counted)."""
        count = self._transport.per_account.get(account.id, 0)
        if self.old_session(account, replaces) is not None:
            count -= 1
        return count >= self.config.max_sessions_per_account

    def old_session(self, account: Account, replaces: int | None) -> Session | None:
        """The session a login replaces, if it is one of that account's."""
        old = self._transport.by_sid.get(replaces) if replaces is not None else None
        if old is None or old.account is None or old.account.id != account.id:
            return None
        return old

    def refuse_account_full(self, session: Session, seq: int, account: Account) -> None:
        self._notes.append(LoginRefused(account.name, session.address, "too_many_sessions"))
        message = "That account has too many sessions open; close one and try again."
        self._refuse(session, seq, "too_many_sessions", message)

    def _on_resume(
        self, session: Session, seq: int, request: wire.Resume, now: float, wall: float
    ) -> None:
        ticket = self.keys.tickets.open_untrusted(request.ticket, wall)
        account = self._by_id.get(ticket.account_id) if ticket is not None else None
        if (
            ticket is None
            or account is None
            or account.key != ticket.key
            or account.locked  # whatever the ticket's mark
            or ticket.password_mark != password_mark(account.password_hash)
        ):
            self._stats["tickets_refused"] += 1
            message = "That ticket cannot be used; log in with the password."
            self._refuse(session, seq, "ticket_invalid", message)
            return
        # A ticket is proof already: no password check, no throttle, no hash.
        assert self.log_in is not None
        self.log_in(session, seq, account, request, now, wall, ticket.expires)
