"""The Trio client API: register, connect, chat; used by the CLI, bots and tests.

    async with trio_chat.connect("127.0.0.1", 1600, "alice", password) as chat:
        await chat.say("hello")
        async for event in chat.events():
            ...

Every call returns once the daemon has acknowledged it (a message: once it is on disk)
and raises a `ChatError` subclass when the daemon refuses. Everything travels encrypted
to the daemon's key, which is trusted the first time it is met and remembered in
`known_servers` (see `keys`); a daemon whose key then changes is refused (`KeyChanged`).
This module is a thin shell: the protocol (handshake, retransmission, reconnection,
resending, deduplication) lives in `client_protocol`, which this drives with a UDP
socket and Trio's clock.
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import trio

from .client_protocol import (
    ClientConfig,
    ClientConnection,
    Handle,
    check_login,
    check_registration,
    registration_result,
)
from .client_shell import (
    Wire,
    answer_on_channels,
    drive,
    local_address,
    open_socket,
    wall_offset,
)
from .errors import ChatError, ServerUnreachable
from .event_buffer import EventBuffer
from .events import ChatMessage, Event, PrivateMessage, PublicMessage
from .keys import Trust, address_label
from .noise import fingerprint
from .trust import ServerKey, key_within, trust_server, where_to_trust

__all__ = ["ChatClient", "ClientConfig", "Receipt", "connect", "register"]


async def register(
    host: str,
    port: int,
    name: str,
    password: str,
    *,
    config: ClientConfig | None = None,
    server_key: ServerKey = None,
    known_servers: Path | str | None = None,
) -> str:
    """Create an account; return its name as the daemon keeps it. Raises `ChatError`s.

    As `connect` waits for its login, this waits for the answer as long as the daemon
    acknowledges it is there (at most `PATIENCE` timeouts on one channel), and again on a
    new channel if the daemon restarted; `ServerUnreachable` if it falls silent for
    `config.timeout` and a quarter, or does not answer in time.
    """
    config = config or ClientConfig()
    known_servers = where_to_trust(host, port, server_key, known_servers)
    check_registration(name, password)
    trusted = await _trusted(host, port, server_key, known_servers, config)
    where = address_label(host, port)
    connection = ClientConnection(trusted.key, config=config, where=where)
    connection.wall_offset = wall_offset()
    handle = connection.register(name, password)
    connection.start(trio.current_time())
    with await open_socket(host, port) as sock:

        def answered() -> bool:
            return handle.done or connection.closed

        failure: ServerUnreachable | None = None
        try:
            await answer_on_channels(
                connection, config.timeout, answered, lambda until: drive(sock, connection, until)
            )
        except ServerUnreachable as error:
            failure = error
        connection.close()  # the account is made (or never will be): say goodbye
        Wire(sock).send(connection)
    if failure is not None:
        raise failure
    if not handle.done and connection.failure is not None:
        raise connection.failure
    return registration_result(handle)


async def _trusted(
    host: str,
    port: int,
    server_key: ServerKey,
    known_servers: Path | None,
    config: ClientConfig | None,
) -> Trust:
    """The daemon's key, as `trust_server` finds it, waited for no longer than `config`
    allows."""
    return await trust_server(
        host,
        port,
        server_key,
        known_servers=known_servers,
        within=key_within(config),
        config=config,
    )


async def _completed(handle: Handle) -> None:
    """Wait until the core completes `handle`; a wait given up leaves nothing on it."""
    if not handle.done:
        done = trio.Event()

        def wake(_handle: Handle) -> None:
            done.set()

        handle.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            handle.discard_done_callback(wake)


_T = TypeVar("_T", covariant=True)


class Receipt(Generic[_T]):
    """A request on its way; `await receipt.wait()` gives its result (the message as
    stored, the names, the page of history) or raises its error."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    @property
    def done(self) -> bool:
        """The daemon has answered, or the request failed: `wait()` returns at once."""
        return self._handle.done

    @property
    def result(self) -> _T | None:
        """The request's result once the daemon has answered it (None before, and if it
        was refused); `wait()` is the way to learn why it failed."""
        handle = self._handle
        return cast(_T, handle.result) if handle.done and handle.error is None else None

    async def wait(self) -> _T:
        """The request's result once the daemon has answered; its `ChatError` if refused,
        or `ConnectionLost` if the session ended first. Cancelling the wait leaves the
        request on its way."""
        await _completed(self._handle)
        if self._handle.error is not None:
            raise self._handle.error.anew()
        return cast(_T, self._handle.result)


class ChatClient:
    """A logged-in session; make one with `connect()`."""

    def __init__(self, host: str, port: int, connection: ClientConnection) -> None:
        self.host, self.port = host, port
        self.connection = connection
        self.server_fingerprint = fingerprint(connection.server_key)
        """The daemon's key as a person compares it (`SHA256:...`)."""
        self._wire: Wire | None = None
        self._wait: trio.CancelScope | None = None
        self._changed = trio.Event()
        self._events = EventBuffer(connection.config.events_kept)

    @property
    def name(self) -> str:
        """The account's name as the daemon keeps it."""
        return self.connection.name

    @property
    def unread(self) -> int:
        """Private messages that waited for this account when it logged in."""
        return self.connection.unread

    @property
    def muted(self) -> bool:
        """Whether the daemon's operator muted this account: it reads the room, and what it
        says or whispers is refused (`Muted`) until unmuted. A `Notice` with `muted` set
        comes whenever this changes."""
        return self.connection.muted

    @property
    def events_waiting(self) -> int:
        """Events received and not yet read from `events()` (at most `config.events_kept`)."""
        return len(self._events)

    @property
    def quiet(self) -> bool:
        """Only looking: logged in with `connect(quiet=True)`, not in the room."""
        return self.connection.quiet

    @property
    def config(self) -> ClientConfig:
        """The `ClientConfig` given to `connect`."""
        return self.connection.config

    @property
    def failure(self) -> ChatError | None:
        """Why the session ended, once it has."""
        return self.connection.failure

    @property
    def connected(self) -> bool:
        """In a session now, not logging in again after losing one."""
        return self.connection.connected

    @property
    def pending(self) -> int:
        """Requests the daemon has not answered yet (messages typed while away included)."""
        return self.connection.pending

    # --- the public API ----------------------------------------------------------------------

    async def say(self, text: str) -> PublicMessage:
        """Send a public message; return it as the daemon stamped it.

        The message is on its way once `say` is called: cancelling the wait for its answer
        does not take it back (it is sent, and sent again after a reconnection, until the
        daemon has it or the session ends)."""
        return await self.say_nowait(text).wait()

    async def whisper(self, to: str, text: str) -> PrivateMessage:
        """Send a private message to an account (online or not); cancelling the wait does
        not take it back, as with `say`."""
        return await self.whisper_nowait(to, text).wait()

    def say_nowait(self, text: str) -> Receipt[PublicMessage]:
        """Queue a public message at once (keeping order) and return its receipt.

        What needs no daemon to tell is raised at once: `TextEmpty`, `TextTooLong`, and
        `ConnectionLost` once the session has ended."""
        return self._submitted(self.connection.say(text))

    def whisper_nowait(self, to: str, text: str) -> Receipt[PrivateMessage]:
        """Queue a private message at once (keeping order) and return its receipt.

        Raised at once, as by `say_nowait`: `TextEmpty`, `TextTooLong`, `ConnectionLost`,
        and `UnknownUser` for a name longer than any account's; other names are the
        daemon's to judge (its receipt raises `UnknownUser`), as an account may keep a
        name from before today's rules."""
        return self._submitted(self.connection.whisper(to, text))

    async def who(self) -> list[str]:
        """The names of everyone online, sorted."""
        return await self.who_nowait().wait()

    def who_nowait(self) -> Receipt[list[str]]:
        """Ask who is online, in order with what was sent before; the receipt gives the names."""
        return self._submitted(self.connection.who())

    async def history(self, limit: int = 20, before: int | None = None) -> list[ChatMessage]:
        """Up to `limit` (1 to 100; others are taken as the nearer) messages older than
        message id `before` (by default, than any), oldest first."""
        return await self.history_nowait(limit, before).wait()

    def history_nowait(
        self, limit: int = 20, before: int | None = None
    ) -> Receipt[list[ChatMessage]]:
        """Ask for history, in order with what was sent before; the receipt gives the messages."""
        return self._submitted(self.connection.history(limit, before))

    async def change_password(self, old: str, new: str) -> None:
        """Give the account a new password (`old` is its password now), once the daemon
        has stored it. The account's other sessions end; this one stays, and comes back
        with the new password if it is lost. Raised: `WrongPassword` for a wrong `old`
        (throttled as logins are), `PasswordTooShort`, `PasswordTooLong` and `PasswordUnchanged`
        (the new password the same as `old`) at once."""
        await self._submitted(self.connection.change_password(old, new)).wait()

    async def drain(self) -> None:
        """Wait until everything sent so far has been answered. It raises nothing for a
        request refused: its receipt does (`Receipt.wait`)."""
        for handle in self.connection.unanswered():
            await _completed(handle)

    async def events(self) -> AsyncIterator[Event]:
        """Everything that happens in the room, in order, starting with the login `History`.

        After `Reconnected` comes a `History` (`resumed`) with what was missed meanwhile
        (the newest 500 at most: see `History.resumed`); its messages have `history` set,
        as the login's have. What this session sends is not yielded live (`say` and
        `whisper` return it), though a `History` may hold it.

        Unread events wait, the newest `config.events_kept` of them: a program that falls
        further behind (or never reads, as a bot that only posts) is given a `Missed` with
        how many older ones went, where they were.

        One stream per client: each event is yielded once, so iterating again (after a
        `break`) goes on where the last iteration stopped, and tasks iterating at once
        share the events between them. Once the session has ended, it ends: quietly if
        this client left (`logout`, or leaving `connect`'s block), else by raising why
        (`failure`: `KeyChanged`, `ConnectionLost`, ...), as reading a socket whose peer
        vanished raises. A daemon that goes away does not end the session by default:
        `Disconnected` says so, and the client keeps trying to come back for as long as
        the program runs (a bot that should give up instead uses
        `ClientConfig(reconnect=False)`, and gets `ConnectionLost`, or
        `ClientConfig(reconnect_for=...)`, and gets it once the daemon has been silent
        that long).
        """
        while (event := await self._events.get()) is not None:
            yield event
        failure = self.connection.failure
        if failure is not None and not self.connection.left:
            raise failure.anew()

    async def events_read(self) -> None:
        """Return once the events that have come so far have been read from `events()` and
        done with (the reader has asked for the next one), or counted in a `Missed`.

        For a program that shows the room's events in one task and a request's answer in
        another: the answer, shown after this, comes after the events that came before it
        (a line refused as muted after the notice that the account is muted). It waits for
        good with nobody reading `events()`, and, with several tasks reading it, for each
        of them to ask for another event: it is meant for one reader.
        """
        await self._events.read_through(self._events.arrived)

    async def logout(self) -> None:
        """Leave the room once what was sent before has been answered; the session ends.

        While the session is up, each answer is awaited for at most `config.timeout`
        after the one before (the daemon answers a logout at once, but a message only once
        it is on disk: sent together, the message's answer would never come). What is
        still unanswered then fails with `ConnectionLost`, saying that the daemon may or
        may not have it (do not send it again blindly: it may have been shown); so does
        everything at once while the client is away logging in again.
        """
        if self.connection.closed:
            return
        for earlier in [] if self.connection.left else self.connection.unanswered():
            if not self.connection.connected:
                break
            with trio.move_on_after(self.config.timeout) as waited:
                await _completed(earlier)
            if waited.cancelled_caught:
                break
        if self.connection.closed:
            return
        handle = self.connection.logout()  # the one on its way, if a logout was cut short
        self._flush()
        with trio.move_on_after(self.config.timeout):
            await _completed(handle)
        self.close()

    def close(self) -> None:
        """Leave now: say goodbye once and wait for nothing. What is unanswered fails with
        `ConnectionLost`; if the goodbye is lost, the private messages shown last may be
        shown again at the next login (`logout` waits, and has no such gap)."""
        self.connection.close()
        self._flush()

    # --- the shell ---------------------------------------------------------------------------

    def _submitted(self, handle: Handle) -> Receipt[Any]:
        receipt: Receipt[Any] = Receipt(handle)
        self._flush()
        return receipt

    def _flush(self) -> None:
        """Send what the core has; hand its events on; wake whoever waits on a change."""
        if self._wire is not None:
            self._wire.send(self.connection)
        while (event := self.connection.next_event()) is not None:
            self._events.put(event)
        if self.connection.closed:
            self._events.close()
        self._changed.set()
        self._changed = trio.Event()
        if self._wait is not None:
            deadline = self.connection.next_timer()
            self._wait.deadline = math.inf if deadline is None else deadline

    async def _run(self, sock: socket.socket) -> None:
        """Pump datagrams and timers until the connection ends."""
        self._wire = udp = Wire(sock)
        connection = self.connection
        connection.local_address = local_address(sock)
        connection.wall_offset = wall_offset()
        connection.start(trio.current_time())
        while True:
            udp.exchange(connection)
            self._flush()
            if connection.closed:
                return
            self._wait = await_scope = trio.CancelScope()
            deadline = connection.next_timer()
            await_scope.deadline = math.inf if deadline is None else deadline
            with await_scope:
                await trio.lowlevel.wait_readable(sock)
            self._wait = None

    async def _until_ready(self) -> None:
        """Wait for the first login and its history; raise why it failed. The daemon is
        pinged while the login waits, with `register`'s limits (`answer_on_channels`)."""
        connection = self.connection

        def done() -> bool:
            return connection.ready or connection.closed

        async def changes(until: Callable[[], bool]) -> None:
            while not until():
                await self._changed.wait()

        await answer_on_channels(connection, self.config.timeout, done, changes, self._flush)
        if connection.failure is not None and not connection.ready:
            raise connection.failure


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    name: str,
    password: str,
    *,
    config: ClientConfig | None = None,
    quiet: bool = False,
    server_key: ServerKey = None,
    known_servers: Path | str | None = None,
) -> AsyncIterator[ChatClient]:
    """Log in and enter the room; leaving the block logs out (`ChatClient.logout`: once
    what was sent has been answered). Raises `ChatError`s; an exception raised in the
    block leaves it at once, as itself (not inside an exception group).

    With `quiet`, only look: the session can ask `who()` and sees `unread`, but it does
    not enter the room (no history: its `History` is empty, and its `more` says nothing;
    no messages, no join or leave notice for others).
    `server_key` and `known_servers`: see `trust_server`.
    """
    known_servers = where_to_trust(host, port, server_key, known_servers)
    check_login(name, password)
    trusted = await _trusted(host, port, server_key, known_servers, config)
    where = address_label(host, port)
    connection = ClientConnection(
        trusted.key, name, password, config=config, quiet=quiet, where=where
    )
    client = ChatClient(host, port, connection)
    raised: BaseException | None = None
    with await open_socket(host, port) as sock:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._run, sock)
                try:
                    await client._until_ready()
                    yield client
                except BaseException:
                    client.close()  # refused, or leaving in a hurry: a goodbye, no wait
                    raise
                else:
                    with trio.CancelScope(shield=True):
                        await client.logout()
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # `_run` raises nothing of its own: the one exception the nursery wrapped is what
            # the wait for the login (a refusal) or the block raised; it leaves as itself.
            # Cancelled from outside, `_run` raises a `Cancelled` beside the block's: one
            # leaves, as it would from any other wait.
            exceptions = group.exceptions
            if len(exceptions) != 1 and not all(isinstance(e, trio.Cancelled) for e in exceptions):
                raise
            raised = exceptions[0]
    if raised is not None:
        try:
            raise raised  # outside the `except`: its own context and traceback are kept
        finally:
            raised = None
