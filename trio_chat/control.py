"""The daemon's control socket: how `trio-chat accounts`, `bans` and `messages remove`
reach a running daemon.

A Unix stream socket beside the database (`chat.db.control`), which only the daemon's
user may open (mode 0600; on Linux the daemon also checks the peer's user, and the
command the listener's). A command connects, writes one request as a line of JSON,
reads the one reply, and the connection ends. The daemon answers one connection at a
time.

The daemon owns its accounts while it runs: it loaded them, and it is the one writer.
Through this socket a lock or a new password is stored by the daemon, then taken at once
(the account's sessions end, its tickets stop working), a removal is taken at once and
then stored, a kick needs no restart, a ban
ends the network's sessions, and a removed message is told to the room.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import msgspec
import trio

from .auth import is_password_hash
from .display import counted, safe_name
from .engine import ServerEngine
from .engine.bans import ban_change
from .logs import event
from .records import (
    Account,
    AccountChange,
    BanRecord,
    BanSet,
    Message,
    MessageRemoval,
    MuteSet,
    OperatorChange,
    PasswordSet,
    network_name,
    unix_time,
)
from .rules import RuleError, name_key
from .store_files import StorageError, room_message

log = logging.getLogger(__name__)

SUFFIX = ".control"
REQUEST_LIMIT = 4096
"""Bytes of a request, at most (a name and a password hash need a few hundred)."""
REPLY_LIMIT = 64 * 1024 * 1024
"""Bytes of a reply a command reads, at most (the list of 100,000 accounts is ~10 MB)."""
READ_WITHIN = 5.0
"""Seconds a connection has to send its request, and then to take the reply."""
STORED_WITHIN = 10.0
"""Seconds the daemon waits for a change to be stored before it answers that it is not."""
LOOKED_UP_WITHIN = 5.0
"""Seconds a message to remove may take to be looked up in the database (SQLite's own
wait for a writer to let go)."""
ANSWER_WITHIN = READ_WITHIN + LOOKED_UP_WITHIN + STORED_WITHIN + READ_WITHIN + 5.0
"""Seconds a command waits for the daemon's reply: longer than the daemon can take on
one request, so that a command is never told "no answer" for a change then made."""
SOCKET_PATH_BYTES = 108
"""What a Unix socket's address holds on Linux, its last byte a NUL."""
LOOKED_AT = {
    "bans": "bans list",
    "ban": "bans list",
    "unban": "bans list",
    "unsay": "messages list",
}
"""The command that shows whether an action's change was made (the rest: `accounts list`)."""
READ_ONLY = frozenset({"list", "find", "bans"})
"""Actions that change nothing."""


def may_have(action: str) -> str:
    """What is known of a request the daemon took, or may have, and did not answer."""
    if action in READ_ONLY:
        return "nothing was changed; see the daemon's log, and try again"
    shows = LOOKED_AT.get(action, "accounts list")
    return f"the change may have been made: `trio-chat {shows}` shows whether"


NOT_STORED = "The daemon could not store the change (see its log)."


def no_message(*message_ids: int, others: bool = False) -> str:
    """The sentence for ids the room's history does not have (`others`: given with other
    ids, none of which was removed)."""
    none = ", so none of those given was removed" if others else ""
    if len(message_ids) == 1:
        missing = f"is no message {message_ids[0]}"
    else:
        *first, last = (str(each) for each in message_ids)
        missing = f"are no messages {', '.join(first)} and {last}"
    return f"There {missing} in the room's history{none}; `trio-chat messages list` shows them."


def removed_already(message_id: int) -> str:
    """The sentence for an id of the room's that the operator removed before."""
    return f"The message {message_id} was removed already."


Action = Literal[
    "list",
    "add",
    "find",
    "lock",
    "unlock",
    "password",
    "kick",
    "remove",
    "mute",
    "unmute",
    "bans",
    "ban",
    "unban",
    "unsay",
]


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a command asks of the running daemon. Fields left as they are default are not
    sent, so that a daemon older than a field still reads what does not use it."""

    action: Action
    name: str = ""
    """The account's name; for `ban` and `unban`, the address or network."""
    password_hash: str = ""
    """For `password` and `add`: the (new) password's argon2id hash (made by the command, not the
    daemon, whose cores are the room's); an `add` without one only asks whether the name
    is free, as the account would be refused otherwise."""
    until: str | None = None
    """For `ban`: when the ban ends (ISO 8601, UTC); None: never."""
    message: int = 0
    """For `unsay`: the id of the room's message to remove from history."""

    def __repr__(self) -> str:
        return f"Request(action={self.action!r}, name={self.name!r})"


class AccountLine(msgspec.Struct, frozen=True):
    """An account as `trio-chat accounts list` shows it."""

    name: str
    created: str
    waiting: int
    """Private messages waiting for it."""
    locked: bool
    sessions: int = 0
    """Sessions open in the room (a running daemon's)."""
    muted: bool = False


class Reply(msgspec.Struct, frozen=True):
    ok: bool
    code: str = ""
    """Why not: `unknown_user`, `unknown_message`, `removed_already`, `unreadable`,
    `not_stored`, `bad_request`, `failed`, `stopping`; for `add`, `invalid_name` and
    `name_taken`."""
    message: str = ""
    accounts: list[AccountLine] = []
    """`list`: every account; `add`: the one made; otherwise the one named, as it was
    before the change."""
    ended: int = 0
    """Sessions the change ended."""
    bans: list[BanRecord] = []
    """`bans`: every ban in force; `ban` and `unban`: the named network's, if it was
    banned."""


_encode = msgspec.json.Encoder().encode
_requests = msgspec.json.Decoder(Request)
_replies = msgspec.json.Decoder(Reply)


def control_path(database: Path) -> Path:
    """The control socket of a daemon running on `database`: beside the file itself (a
    symbolic link followed), whichever path the daemon and the command were given."""
    real = database.resolve()
    return real.with_name(real.name + SUFFIX)


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """`path` as a socket there can be bound or reached: through its open directory
    (`/proc/self/fd/N/name`, on Linux) when it is longer than a Unix socket's address
    holds (108 bytes)."""
    where = str(path)
    if len(os.fsencode(where)) < SOCKET_PATH_BYTES or not os.path.isdir("/proc/self/fd"):
        yield where
        return
    try:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield where  # no such folder: reached as it is, and found missing
        return
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def account_line(account: Account, waiting: int, sessions: int = 0) -> AccountLine:
    return AccountLine(
        account.name, account.created, waiting, account.locked, sessions, account.muted
    )


def change_for(request: Request, account_id: int) -> AccountChange:
    """The change a `lock`, `unlock`, `mute`, `unmute` or `password` request asks of an
    account."""
    if request.action in ("mute", "unmute"):
        return MuteSet(account_id, request.action == "mute")
    if request.action == "lock":
        return PasswordSet(account_id, lock=True)
    if request.action == "unlock":
        return PasswordSet(account_id, lock=False)
    return PasswordSet(account_id, request.password_hash)


class Peer(NamedTuple):
    """The process at the other end of a Unix socket, as the kernel tells it."""

    pid: int
    uid: int


def _peer(sock: socket.socket | trio.socket.SocketType) -> Peer | None:
    """Who is at the other end of a Unix socket, where Linux tells."""
    if not sys.platform.startswith("linux"):
        return None
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    pid, uid, _gid = struct.unpack("iII", credentials)
    return Peer(int(pid), int(uid))


# --- the command's side ---------------------------------------------------------------------


class ControlRefused(Exception):
    """The daemon's control socket is there, but may not be used, or did not answer.
    `unanswered`: it took the request, or may have, and gave no answer."""

    def __init__(self, message: str, *, unanswered: bool = False) -> None:
        super().__init__(message)
        self.unanswered = unanswered


def ask(
    path: Path, request: Request, owners: set[int] | None = None, timeout: float = ANSWER_WITHIN
) -> Reply | None:
    """The daemon's reply to `request`, or None if no daemon listens at `path`. The
    listener must run as root, this user, or one of `owners` (the database's owner)."""
    deadline = time.monotonic() + timeout
    where = str(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, _reachable(path) as there:
        pause = 0.02
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                sock.connect(there)
                break
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
                return None  # not running; or gone, its socket left behind
            except PermissionError:
                raise ControlRefused(
                    f"You may not use the daemon's control socket {where!r}; run this as the "
                    "user the daemon runs as."
                ) from None
            except BlockingIOError:
                # Its queue is full (commands run at once): wait for a place.
                if time.monotonic() + pause > deadline:
                    raise ControlRefused(
                        f"The daemon's control socket {where!r} stayed busy; try again."
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
            except OSError as error:
                if error.errno == errno.ENAMETOOLONG or "too long" in str(error):
                    return None  # the daemon could not make it either: it said so in its log
                raise ControlRefused(
                    f"Cannot reach the daemon's control socket {where!r}: "
                    f"{error.strerror or error}."
                ) from None
        listener = _peer(sock)
        if listener is not None and listener.uid not in {0, os.getuid(), *(owners or ())}:
            raise ControlRefused(
                f"The control socket {where!r} is another user's (user id {listener.uid}), "
                "not the daemon's; nothing was sent to it."
            )
        received = bytearray()
        try:
            sock.sendall(_encode(request) + b"\n")
            while len(received) <= REPLY_LIMIT and not received.endswith(b"\n"):
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            raise ControlRefused(
                f"The daemon did not answer at {where!r} within {timeout:.0f} s; "
                f"{may_have(request.action)}.",
                unanswered=True,
            ) from None
        except OSError as error:
            raise ControlRefused(
                f"The daemon's control socket {where!r} broke off ({error.strerror or error}); "
                f"{may_have(request.action)}.",
                unanswered=True,
            ) from None
    try:
        return _replies.decode(received)
    except msgspec.DecodeError:
        raise ControlRefused(
            f"The daemon's answer at {where!r} could not be read (see its log); "
            f"{may_have(request.action)}.",
            unanswered=True,
        ) from None


# --- the daemon's side ----------------------------------------------------------------------


class Desk:
    """Answers the operator's requests on a running daemon's engine.

    `wake` has the daemon's loop start the engine's effects and send what it has (the
    change to store, the goodbyes); the daemon calls `reported` for every change of the
    operator's (`OperatorChange`) committed or failed.
    """

    def __init__(
        self,
        engine: ServerEngine,
        wake: Callable[[], None],
        clock: Callable[[], tuple[float, float]],
        database: Path | None = None,
    ) -> None:
        self.engine = engine
        self._database = database
        """Where a message to remove is looked up first (read-only, in a thread)."""
        self._wake = wake
        self._clock = clock
        self._waiting: dict[int, tuple[bool, int] | None] = {}
        """Changes asked of the store, by `id()`: whether stored and the sessions it
        ended, None until reported."""
        self._reported = trio.Event()

    def reported(self, op: OperatorChange | Account, stored: bool) -> None:
        # An account made ends no session (and may be a registration's, asked by no one).
        ended = 0 if isinstance(op, Account) else self.engine.sessions_ended_by(op)
        if id(op) in self._waiting:
            self._waiting[id(op)] = (stored, ended)
            self._reported.set()

    async def answer(self, request: Request, peer: Peer | None = None) -> Reply:
        """Do what `request` asks; `peer`, the command's process, is named in the log."""
        engine = self.engine
        if request.action in ("bans", "ban", "unban"):
            return await self._bans(request, peer)
        if request.action == "unsay":
            return await self._unsay(request, peer)
        if request.action == "list":
            accounts = sorted(engine.accounts.values(), key=lambda a: a.key)
            return Reply(True, accounts=[self._line(account) for account in accounts])
        if request.action == "add":
            return await self._add(request, peer)
        account = engine.accounts.get(name_key(request.name)) if request.name else None
        if account is None:
            return Reply(False, "unknown_user", f"There is no account named {request.name!r}.")
        before = [self._line(account)]
        if request.action == "find":
            return Reply(True, accounts=before)
        if request.action == "kick":
            now, wall = self._clock()
            ended = engine.remove(account.key, now, wall)
            self._wake()
            if ended:
                _log_done("kick", account, ended, peer)
            return Reply(True, accounts=before, ended=ended)
        if request.action == "remove":
            now, wall = self._clock()
            outcome = await self._stored(engine.remove_account(account.key, now, wall))
            if outcome is None or not outcome[0]:
                return _not_stored(outcome)
            _log_done("remove", account, outcome[1], peer)
            return Reply(True, accounts=before, ended=outcome[1])
        if request.action == "password" and not is_password_hash(request.password_hash):
            return _not_a_hash()
        # Stored even when it changes nothing to see: a change asked before may still be
        # on its way to the disk, and each is applied to what the one before left.
        outcome = await self._store(change_for(request, account.id))
        if outcome is None or not outcome[0]:
            return _not_stored(outcome)
        ended = outcome[1]
        _log_done(request.action, account, ended, peer)
        return Reply(True, accounts=before, ended=ended)

    async def _add(self, request: Request, peer: Peer | None) -> Reply:
        """Make the account named, with the password hashed by the command; with none,
        only say whether it could be made (asked before the password is)."""
        checking = not request.password_hash
        if not checking and not is_password_hash(request.password_hash):
            return _not_a_hash()
        _now, wall = self._clock()
        try:
            if checking:
                self.engine.free_name(request.name)
                return Reply(True)
            account = self.engine.add_account(request.name, request.password_hash, wall)
        except RuleError as error:
            return Reply(False, error.code, error.message)
        outcome = await self._stored(account)
        if outcome is None or not outcome[0]:
            return _not_stored(outcome)
        _log_done("add", account, 0, peer)
        return Reply(True, accounts=[self._line(account)])

    async def _bans(self, request: Request, peer: Peer | None) -> Reply:
        engine = self.engine
        _now, wall = self._clock()
        if request.action == "bans":
            return Reply(True, bans=engine.bans.in_force(wall))
        try:
            network = network_name(request.name)
            if request.until is not None:
                unix_time(request.until)
        except ValueError as error:
            return Reply(False, "bad_request", str(error))
        was = engine.bans.get(network, wall)
        before = [] if was is None else [was]
        banning = request.action == "ban"
        change = ban_change(was, network, banning, request.until, wall)
        if change is None:
            return Reply(True, bans=before)  # as asked already: nothing to store
        outcome = await self._store(change)
        if outcome is None or not outcome[0]:
            return _not_stored(outcome)
        ended = outcome[1]
        done = "lifted the ban on {}"
        if banning:
            done = "banned {}" + ("" if request.until is None else f" until {request.until}")
        until = {} if request.until is None or not banning else {"until": request.until}
        _log(request.action, done.format(network), ended, peer, network=network, **until)
        return Reply(True, bans=before, ended=ended)

    async def _unsay(self, request: Request, peer: Peer | None) -> Reply:
        """Remove a room message: one the room's history has (not a private one, nor one
        removed already, maybe by a command at the same time)."""
        message_id = request.message
        chat = self.engine.chat
        found, removed = 0 < message_id < chat.next_message_id, False
        if found and self._database is not None:
            try:
                looked = await trio.to_thread.run_sync(room_message, self._database, message_id)
                found, removed = isinstance(looked, Message), looked is True
            except StorageError as error:
                return Reply(False, "unreadable", str(error))
        if removed or chat.unsaid(message_id):
            return Reply(False, "removed_already", removed_already(message_id))
        if not found:
            return Reply(False, "unknown_message", no_message(message_id))
        outcome = await self._store(MessageRemoval(message_id))
        if outcome is None or not outcome[0]:
            return _not_stored(outcome)
        done = f"removed the message {message_id}"
        _log(request.action, done, 0, peer, message_id=str(message_id))
        return Reply(True)

    async def _store(self, op: AccountChange | BanSet | MessageRemoval) -> tuple[bool, int] | None:
        """Whether `op` was stored (and taken), with the sessions it ended; None if it was
        not reported within `STORED_WITHIN`."""
        if isinstance(op, BanSet):
            self.engine.change_bans(op)
        elif isinstance(op, MessageRemoval):
            self.engine.remove_message(op)
        else:
            self.engine.change_account(op)
        return await self._stored(op)

    async def _stored(self, op: OperatorChange | Account) -> tuple[bool, int] | None:
        """`_store`'s answer for `op`, handed to the engine to store."""
        self._waiting[id(op)] = None
        self._wake()
        with trio.move_on_after(STORED_WITHIN):
            while self._waiting[id(op)] is None:
                await self._reported.wait()
                self._reported = trio.Event()
        return self._waiting.pop(id(op))

    def _line(self, account: Account) -> AccountLine:
        engine = self.engine
        waiting = engine.mailbox.count(account.id)
        return account_line(account, waiting, engine.session_count(account.id))


_DONE = {
    "add": "made the account {}",
    "lock": "locked {}",
    "unlock": "unlocked {}",
    "password": "set a new password for {}",
    "kick": "took {} out of the room",
    "remove": "removed the account {}",
    "mute": "muted {}",
    "unmute": "unmuted {}",
}


def _not_a_hash() -> Reply:
    return Reply(False, "bad_request", "That is not an argon2id password hash.")


def _not_stored(outcome: tuple[bool, int] | None) -> Reply:
    """The answer to a change not stored: refused by the store, or not yet (`None`)."""
    if outcome is None:
        return Reply(
            False,
            "not_stored",
            f"The daemon has not stored the change within {STORED_WITHIN:.0f} s (see its "
            "log); it makes it if its database takes it.",
        )
    return Reply(False, "not_stored", NOT_STORED)


def _by(peer: Peer | None) -> str:
    """Who asked, for the log: the command's user and process, as the kernel tells."""
    return "" if peer is None else f" (user id {peer.uid}, process {peer.pid})"


def _log_done(action: str, account: Account, ended: int, peer: Peer | None) -> None:
    done = _DONE[action].format(safe_name(account.name))
    _log(action, done, ended, peer, name=account.name)


def _log(action: str, done: str, ended: int, peer: Peer | None, **fields: str) -> None:
    """Log what the operator did (`done`), who asked, and the sessions it ended."""
    what = f"the operator{_by(peer)} {done}"
    if ended:
        what += f" ({counted(ended, 'session')} ended)"
    asked = {} if peer is None else {"uid": peer.uid, "pid": peer.pid}
    event(logging.INFO, "operator", what, action=action, ended=ended, **fields, **asked)


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Files made meanwhile are the daemon's user's alone (the socket's mode, as bound)."""
    mask = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(mask)


class ControlUnavailable(Exception):
    """No control socket could be made; the message says why, for the log (the commands
    then need a stopped daemon)."""


def open_control(path: Path) -> trio.SocketListener:
    """A listener at `path`; `ControlUnavailable` if there can be none."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(status.st_mode):
            raise ControlUnavailable(
                f"a file that is not a socket is in its place; remove {str(path)!r}"
            )
        try:
            # Left by a daemon that did not stop cleanly: this one holds the database's
            # lock, so nothing else answers there.
            os.unlink(path)
        except OSError as error:
            raise ControlUnavailable(
                f"a socket of user id {status.st_uid} is in its place and cannot be removed "
                f"({error.strerror}); remove {str(path)!r}"
            ) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _private_files(), _reachable(path) as there:
            sock.bind(there)  # here, at once: no other code runs under the mask
            os.chmod(there, 0o600)
        sock.listen(16)
    except OSError as error:
        sock.close()
        raise ControlUnavailable(str(error.strerror or error)) from None
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


Answer = Callable[[Request, Peer | None], Awaitable[Reply]]
"""What answers a request, given the process that sent it (`Desk.answer`)."""


async def serve_control(
    listener: trio.SocketListener,
    path: Path,
    answer: Answer,
) -> None:
    """Answer requests on `listener` (bound at `path`, by `open_control`) until
    cancelled; then remove the socket, if it is still this one."""
    made = os.lstat(path).st_ino
    try:
        async with listener:
            while True:
                stream = await listener.accept()  # it waits out a lack of descriptors
                async with stream:
                    try:
                        await _serve_one(stream, answer)
                    except Exception:
                        log.exception("error on the control socket")
    finally:
        with contextlib.suppress(OSError):
            if os.lstat(path).st_ino == made:
                os.unlink(path)


async def _serve_one(stream: trio.SocketStream, answer: Answer) -> None:
    peer = _peer(stream.socket)
    if peer is not None and peer.uid not in (0, os.getuid()):
        log.warning("refused a connection to the control socket from user id %d", peer.uid)
        return
    received = bytearray()
    with trio.move_on_after(READ_WITHIN), contextlib.suppress(trio.BrokenResourceError):
        while len(received) <= REQUEST_LIMIT and b"\n" not in received:
            chunk = await stream.receive_some(REQUEST_LIMIT)
            if not chunk:
                break
            received += chunk
    try:
        request = _requests.decode(bytes(received).split(b"\n", 1)[0])
    except msgspec.DecodeError as error:
        reply = Reply(False, "bad_request", f"That request could not be read: {error}.")
    else:
        try:
            reply = await answer(request, peer)
        except trio.Cancelled:
            # The daemon is stopping: say so, in the moment it gives.
            said = f"The daemon is stopping; {may_have(request.action)}."
            stopping = Reply(False, "stopping", said)
            shielded = trio.CancelScope(shield=True)
            with shielded, trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(_encode(stopping) + b"\n")
            raise
        except Exception:
            log.exception("error answering %r on the control socket", request)
            reply = Reply(False, "failed", "The daemon failed to answer; see its log.")
    with trio.move_on_after(READ_WITHIN), contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(_encode(reply) + b"\n")
