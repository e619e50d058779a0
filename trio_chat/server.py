"""The daemon: the engine under a thin Trio shell.

One nursery runs the UDP receive loop (which also fires the engine's timers and, at the
end of each turn, commits what the turn stored: `persistence.py`), the persistence task
(commits in a worker thread while the disk is slow), and short tasks that hash passwords
or read history in worker threads. Cancelling `serve` shuts down cleanly: sessions are
told, what is still queued is committed, the database is closed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from . import __version__, auth, wire
from .control import ControlUnavailable, Desk, control_path, open_control, serve_control
from .display import counted, quoted
from .engine import (
    Address,
    CheckPassword,
    Effect,
    FindSent,
    HashPassword,
    LoadHistory,
    LoadMailbox,
    Persist,
    ServerConfig,
    ServerEngine,
)
from .handshake_queue import HandshakeQueue
from .keys import (
    KeyFileError,
    copy_secret,
    daemon_keys,
    key_paths,
    older_key_path,
    secret_in,
    unbracketed,
)
from .logs import NoteLog, Summary, event, limits_changed, shown
from .noise import fingerprint
from .persistence import Persistence
from .records import Account, Message, OperatorChange, StoreOp
from .secure import DaemonKeys
from .store import SqliteStore, Storage

log = logging.getLogger(__name__)
SUMMARY_EVERY = 60.0
"""Seconds between the log's summary lines."""
T = TypeVar("T")

BATCH = 256
"""Datagrams taken from the socket before the engine's output is flushed."""


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to `host:port` (IPv4 or IPv6, as the host says)."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        unbracketed(host), port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


SEND_ALL_WITHIN = 5.0
"""Seconds `Daemon.send_all` waits for room in the socket's buffer, at most."""
PASSWORD_THREAD_NICENESS = 10
"""How far below the daemon's priority password hashing threads put themselves (Linux)."""


class PasswordThreads:
    """Threads of their own for argon2, at a lower CPU priority than everything else.

    Hashing is slow and memory-hard on purpose (~25 ms and 19 MiB a password): a burst of
    logins at normal priority takes a whole core from the event loop and its peers, and
    chat stutters. At lower priority the hashing uses what the rest leaves idle. On Linux
    the threads also take the idle scheduling class: a lower nice value alone still let a
    hash keep a core its slice long while the loop or a client waited to be placed on
    it (the bench's chat p99 during 200 logins: 6.6-7.0x quiet niced, 2.4x idle-class).
    Under a load that leaves no CPU idle, logins then wait; the check queue is bounded and
    answers `busy` past it. Trio's shared worker threads are not used for it: a thread
    cannot raise its priority again without privileges.
    """

    def __init__(self, threads: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="trio-chat-password", initializer=_lower_priority
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in one of the threads and wait for it without blocking Trio."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_future: concurrent.futures.Future[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future = self._pool.submit(fn, *args)
        future.add_done_callback(wake)
        await done.wait()
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    if sys.platform.startswith("linux"):
        # Linux keeps a nice value and a scheduling class per thread: this lowers the
        # calling thread alone, relative to the daemon's own (which may already be niced).
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            niceness = os.getpriority(os.PRIO_PROCESS, thread) + PASSWORD_THREAD_NICENESS
            os.setpriority(os.PRIO_PROCESS, thread, min(niceness, 19))
        with contextlib.suppress(OSError):
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))


@functools.cache  # once per process
def _freeze_startup_heap() -> None:
    """Keep Python's cycle collector off what the daemon has loaded by the time it starts.

    A full collection walks every object that might hold a cycle: with the modules,
    accounts and history a daemon holds that took 20-40 ms here, a stall every message
    in flight waited out (the 99th percentile of chat during a login storm). Collected
    once, then frozen, those objects are skipped from then on (they live as long as the
    daemon); later collections see only what was made since.
    """
    gc.collect()
    gc.freeze()


class Daemon:
    """Connects a `ServerEngine` to a socket, a store, worker threads and the clock."""

    def __init__(
        self,
        engine: ServerEngine,
        sock: socket.socket,
        storage: Storage,
        nursery: trio.Nursery,
        passwords: PasswordThreads,
        database: Path | None = None,
    ) -> None:
        self.engine = engine
        self.sock = sock
        self.nursery = nursery
        self.persistence = Persistence(storage, self.committed, self.failed)
        self._wait: trio.CancelScope | None = None
        self._passwords = passwords
        self.send_errors = 0
        self.notes = NoteLog()
        self.desk = Desk(
            engine, self._flush_soon, lambda: (trio.current_time(), time.time()), database
        )
        """The operator's requests (`control.py`)."""

    async def run(self) -> None:
        """Receive datagrams and fire timers until cancelled."""
        engine, sock = self.engine, self.sock
        receive = sock.recvfrom
        from_member = engine.from_member
        handshakes: HandshakeQueue[Address] = HandshakeQueue()
        while True:
            now, wall = trio.current_time(), time.time()
            received = 0
            later: list[tuple[bytes, Address]] = []
            while received < BATCH:
                received += 1
                try:
                    data, address = receive(wire.RECEIVE_BUFFER)
                except BlockingIOError:
                    received -= 1
                    break
                except OSError:
                    continue  # an ICMP error for an earlier send; nothing to read here
                if from_member(data):
                    self._receive(data, address, now, wall)
                elif not handshakes.defer(data, address):
                    later.append((data, address))
            if engine.set_aside:
                # Requests that came in bulk: acknowledged before they are worked on, so
                # that their client can send what it holds back meanwhile.
                self.flush()
                engine.handle_set_aside(now, wall)
            if later or handshakes:
                # The room's datagrams are read first and what they stored is committed
                # and sent before logins, strangers and the handshakes held back are
                # answered: a chat message does not wait behind a login flood.
                self._settle()
                for data, address in later:
                    self._receive(data, address, now, wall)
                for data, address in handshakes.turn():
                    self._receive(data, address, now, wall)
            engine.handle_timers(now, wall)
            self._settle()
            if received == BATCH or handshakes:
                await trio.lowlevel.checkpoint()
                continue
            deadline = engine.next_timer()
            if deadline is None:
                deadline = math.inf
            with trio.CancelScope(deadline=deadline) as wait:
                self._wait = wait
                await trio.lowlevel.wait_readable(sock)
            self._wait = None

    def _receive(self, data: bytes, address: Address, now: float, wall: float) -> None:
        try:
            self.engine.receive_datagram(data, address, now, wall)
        except Exception:
            # A bug must not let one peer's datagram stop the daemon for everyone.
            log.exception("error handling a datagram from %s", address)

    def _settle(self) -> None:
        """Commit what the engine stored, then send what it has.

        What waited for the commit (a message's `ok` to its sender and the message to
        the room) then leaves at once, and a request's acknowledgement rides in the same
        datagram as its answer instead of one of its own sent before the commit.
        """
        self._start_effects()
        self.persistence.commit_here()
        self.flush()

    def flush(self) -> None:
        """Send what the engine has for the network; start the work it asked for."""
        engine = self.engine
        now = trio.current_time()
        engine.send_due(now, time.time(), self._send)
        self._start_effects()
        for note in engine.take_notes():
            self.notes.log(note, now)

    def _send(self, datagrams: list[tuple[bytes, Address]]) -> None:
        send = self.sock.sendto
        for data, address in datagrams:
            try:
                send(data, address)
            except OSError:
                # A full send buffer or an unreachable peer: the link retransmits.
                self.send_errors += 1

    def _start_effects(self) -> None:
        """Start the work the engine asked for: commits queued, hashes and reads begun."""
        for effect in self.engine.take_effects():
            self._start(effect)

    def _start(self, effect: Effect) -> None:
        if isinstance(effect, Persist):
            self.persistence.add(effect.op)
        elif isinstance(effect, HashPassword):
            self.nursery.start_soon(self._hash, effect)
        elif isinstance(effect, CheckPassword):
            self.nursery.start_soon(self._check, effect)
        elif isinstance(effect, LoadHistory):
            self.nursery.start_soon(self._history, effect)
        elif isinstance(effect, FindSent):
            self.nursery.start_soon(self._find_sent, effect)
        else:
            self.nursery.start_soon(self._mailbox, effect)

    async def _hash(self, effect: HashPassword) -> None:
        hashed = await self._passwords.run(auth.hash_password, effect.password)
        self.engine.password_hashed(effect.job, hashed, time.time())
        self._flush_soon()

    async def _check(self, effect: CheckPassword) -> None:
        ok = await self._passwords.run(auth.verify_password, effect.password_hash, effect.password)
        self.engine.password_checked(effect.job, ok, trio.current_time(), time.time())
        self._flush_soon()

    async def _history(self, effect: LoadHistory) -> None:
        messages = await self.persistence.history(effect.account_id, effect.before, effect.limit)
        self.engine.history_loaded(effect.job, messages)
        self._flush_soon()

    async def _find_sent(self, effect: FindSent) -> None:
        message = await self.persistence.sent(effect.sender_id, effect.cid)
        self.engine.sent_found(effect.job, message)
        self._flush_soon()

    async def _mailbox(self, effect: LoadMailbox) -> None:
        job = effect.job
        read = await self.persistence.mailbox(
            effect.account_id, lambda: self.engine.wants_mailbox(job)
        )
        # None: the read failed, and nobody waits for it any longer.
        self.engine.mailbox_loaded(job, read or (), trio.current_time(), time.time())
        self._flush_soon()

    def committed(self, op: StoreOp) -> None:
        self.engine.committed(op, trio.current_time(), time.time())
        if isinstance(op, OperatorChange | Account):  # an account: maybe the operator's
            self.desk.reported(op, stored=True)
        self._flush_soon()

    def failed(self, op: StoreOp, earlier: Message | None) -> None:
        self.engine.failed(op, earlier)
        if isinstance(op, OperatorChange | Account):
            self.desk.reported(op, stored=False)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Have the receive loop flush, once, for everything reported meanwhile.

        A commit reports every change it stored, one after another, and logins finish
        in bursts; flushing after each would send one `ok` or one `join` notice per
        datagram to everyone. Waking the loop instead sends them together.
        """
        if self._wait is not None:
            self._wait.cancel()

    async def send_all(self, datagrams: list[tuple[bytes, Address]]) -> int:
        """Send every datagram, waiting while the socket's buffer is full (for at most
        `SEND_ALL_WITHIN`), rather than dropping what nothing would send again: the
        goodbyes at a shutdown, the notices after a crash. Returns how many were sent."""
        send, sent = self.sock.sendto, 0
        with trio.move_on_after(SEND_ALL_WITHIN):
            for data, address in datagrams:
                while True:
                    try:
                        send(data, address)
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(self.sock)
                        continue
                    except OSError:
                        self.send_errors += 1
                    else:
                        sent += 1
                    break
        return sent

    async def tell_restarted(self) -> None:
        """Tell the clients of sessions open when the daemon last stopped (after a crash)
        that those sessions are gone, so that they log in again now."""
        notices = self.engine.restart_notices()
        if notices:
            sent = await self.send_all(notices)
            event(
                logging.INFO,
                "restarted",
                f"told {counted(sent, 'session')} open before an unclean stop to log in again",
                sessions=len(notices),
                sent=sent,
            )
        self._start_effects()  # those sessions are forgotten, on disk too

    async def shutdown(self) -> None:
        sessions = len(self.engine.sessions)
        engine = self.engine
        engine.shutdown(trio.current_time(), time.time())
        engine.take_notes()  # one line for all, below, not one per session
        self._start_effects()
        with trio.CancelScope(shield=True):
            await self.send_all(engine.datagrams_to_send(trio.current_time(), time.time()))
        event(
            logging.INFO,
            "stopping",
            f"told {counted(sessions, 'session')} the daemon is stopping",
            sessions=sessions,
        )


async def log_summaries(daemon: Daemon, every: float) -> None:
    """A summary line every `every` seconds (see `logs.Summary`)."""
    engine = daemon.engine
    summary = Summary()
    summary.line(engine.stats, 0, 0, 1.0)  # the starting point, not logged
    while True:
        await trio.sleep(every)
        online = engine.room.accounts_online
        minutes = every / 60
        stats = {**engine.stats, "send_errors": daemon.send_errors}
        summary.line(stats, len(engine.sessions), online, minutes, daemon.notes.unlogged)


async def serve(
    host: str = "127.0.0.1",
    port: int = 1600,
    database: Path | str | None = None,
    config: ServerConfig | None = None,
    *,
    storage: Storage | None = None,
    keys: DaemonKeys | None = None,
    on_ready: Callable[[ServerEngine], Any] | None = None,
    summary_every: float = SUMMARY_EVERY,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled; `task_status.started` gets the bound address.

    Its keys are read from beside `database` (made on first start) unless given; a
    daemon given only a `storage` object makes new ones. Cancelled while its last
    commit had failed, it stops cleanly and then raises `StorageError`, saying so.
    """
    config = config or ServerConfig()
    # The port first: a daemon that cannot listen should not have touched the database;
    # then a key file already there: one that is damaged should not have made a database.
    # (One that is not there is made once the database opened, not beside a path that
    # turns out to be no database.)
    with bind_udp(host, port) as sock:
        new_key = False
        if keys is None and database is not None:
            new_key = not key_paths(Path(database))[0].exists()
            if not new_key:
                keys = await trio.to_thread.run_sync(daemon_keys, Path(database))
        opened: SqliteStore | None = None
        running: list[Daemon] = []
        existed = False
        if storage is None:
            if database is None:
                raise ValueError("serve() needs a database path or a storage object")
            existed = await trio.to_thread.run_sync(_holds_something, Path(database))
            storage = opened = await trio.to_thread.run_sync(_open_store, Path(database))
        try:
            if new_key and existed and database is not None:
                new_key = not await trio.to_thread.run_sync(_take_older_key, Path(database))
            if opened is not None:
                await trio.to_thread.run_sync(opened.presize_log)
            if keys is None:
                keys = DaemonKeys.generate() if database is None else daemon_keys(Path(database))
            control = None if database is None else control_path(Path(database))
            await _run(
                sock,
                storage,
                keys,
                config,
                on_ready,
                summary_every,
                task_status,
                new_key,
                running,
                control,
            )
        except BaseException as stopping:
            # Told to stop (cancelled), after a last commit that failed: the stop is
            # clean, but the database lacks what the daemon last tried to write, and
            # whoever runs it (a supervisor that sees only the exit status) must know.
            unstored = running[0].persistence.unstored() if running else None
            if unstored is not None and _cancelled(stopping):
                raise unstored from None
            raise
        finally:
            storage.close()
            event(logging.INFO, "stopped", "stopped; the database is closed")


def _cancelled(error: BaseException) -> bool:
    """Whether `error` is Trio's cancellation alone (or a group of nothing else)."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(trio.Cancelled)[1] is None
    return isinstance(error, trio.Cancelled)


async def _run(
    sock: socket.socket,
    storage: Storage,
    keys: DaemonKeys,
    config: ServerConfig,
    on_ready: Callable[[ServerEngine], Any] | None,
    summary_every: float,
    task_status: trio.TaskStatus[Address],
    new_key: bool = False,
    running: list[Daemon] | None = None,
    control: Path | None = None,
) -> None:
    """Run the daemon on an open socket and storage until cancelled; the `Daemon` made
    is put in `running`, for what the stop has to tell of it. The operator's requests
    are answered at the socket `control`, if given."""
    snapshot = await trio.to_thread.run_sync(storage.load, config.window_messages)
    snapshot.ids_from_clock(time.time())
    if new_key and snapshot.accounts:
        _warn_new_key(len(snapshot.accounts))
    engine = ServerEngine(config, snapshot, keys=keys, acknowledge_bulk_first=True)
    _freeze_startup_heap()
    # Every core but one may hash: the event loop keeps one to itself.
    passwords = PasswordThreads(max(1, (os.cpu_count() or 2) - 1))
    with contextlib.closing(passwords):
        async with trio.open_nursery() as nursery:
            database = storage.path if isinstance(storage, SqliteStore) else None
            daemon = Daemon(engine, sock, storage, nursery, passwords, database)
            if running is not None:
                running.append(daemon)
            await nursery.start(daemon.persistence.run)
            unavailable = None
            if control is not None:
                try:
                    listener = open_control(control)
                except ControlUnavailable as error:
                    unavailable = str(error)
                else:
                    nursery.start_soon(serve_control, listener, control, daemon.desk.answer)
            address = sock.getsockname()
            _log_start(address, storage, engine, config, control, unavailable)
            nursery.start_soon(log_summaries, daemon, summary_every)
            if on_ready is not None:
                on_ready(engine)
            task_status.started(address)
            try:
                await daemon.tell_restarted()
                await daemon.run()
            finally:
                await daemon.shutdown()
                daemon.persistence.close()  # its task commits what is left, then ends
                nursery.cancel_scope.cancel()


def _holds_something(database: Path) -> bool:
    """Whether a database is there already (a file of no bytes is made anew)."""
    return database.exists() and database.stat().st_size > 0


def _open_store(database: Path) -> SqliteStore:
    """Open the database, saying so if it is made now: a path mistyped in `--db` would
    otherwise start a daemon with no accounts, and nothing would tell why."""
    new = not _holds_something(database)
    store = SqliteStore.open(database)
    if new:
        event(
            logging.INFO,
            "new_database",
            f"made a new database at {database}: nothing was there (if this daemon's is "
            "elsewhere, stop it and name that one with --db)",
            database=str(database),
        )
    return store


def _take_older_key(database: Path) -> bool:
    """Keep the key clients trust for a database a trio-chat before this one kept under
    another name (`room.key` for `room.v2`): copied to where it is kept now, so that the
    daemon upgraded is not a daemon with a new key that every client refuses. Its ticket
    key is not taken (the other name may be another database's too): sessions log in
    with their password once more. Whether it was taken."""
    older = older_key_path(database)
    if older is None or not older.exists():
        return False
    static_path, _tickets = key_paths(database)
    secret_in(older)  # one damaged is said, by its name
    try:
        copy_secret(older, static_path)
    except OSError as error:
        raise KeyFileError(
            f"Cannot copy the key file {str(older)!r} to {str(static_path)!r}: "
            f"{(error.strerror or str(error)).lower()}."
        ) from None
    event(
        logging.WARNING,
        "older_key",
        f"took the key {older}, where an older trio-chat kept this database's, as "
        f"{static_path}: clients go on trusting this daemon; back that file up with the "
        "database from now on",
        older=str(older),
        key=str(static_path),
    )
    return True


def _warn_new_key(accounts: int) -> None:
    """The key was made just now, for a database that has accounts: a key file lost (a
    backup restored without it, say), which every client that knew the old key notices."""
    event(
        logging.WARNING,
        "new_key",
        f"made a new key for a database with {counted(accounts, 'account')}: clients that "
        "knew the old key will refuse this daemon until they trust the new one; if the key "
        "file was lost, stop the daemon and put it back",
        accounts=accounts,
    )


def _log_start(
    address: Address,
    storage: Storage,
    engine: ServerEngine,
    config: ServerConfig,
    control: Path | None,
    unavailable: str | None,
) -> None:
    """The daemon's first line; a warning if its control socket (`control`) could not be
    made, and why (`unavailable`)."""
    where = shown(address)
    database = getattr(storage, "path", "-")
    key = fingerprint(engine.keys.public)
    event(
        logging.INFO,
        "listening",
        f"trio-chat is listening on {where} (database {database}, key {key}, version "
        f"{__version__}, process {os.getpid()})",
        address=where,
        database=str(database),
        key=key,
        version=__version__,
        pid=os.getpid(),
        accounts=len(engine.accounts),
        control=None if control is None or unavailable is not None else str(control),
    )
    if unavailable is not None:
        event(
            logging.WARNING,
            "no_control",
            f"no control socket at {control} ({unavailable}): `trio-chat accounts` needs the "
            "daemon stopped until it is there at a start",
            control=str(control),
        )
    turned_away = len(engine.bans.in_force(time.time()))
    if turned_away:
        event(
            logging.INFO,
            "bans",
            f"{counted(turned_away, 'address or network', 'addresses or networks')} turned "
            "away (`trio-chat bans list` shows which)",
            count=turned_away,
        )
    for first, second in engine.lobby.name_collisions():
        event(
            logging.WARNING,
            "names_collide",
            f"the accounts {quoted(first)} and {quoted(second)} could be mistaken for each "
            "other (both keep working; no new name like them is accepted)",
            names=[first, second],
        )
    changed = limits_changed(config)
    if changed:
        listed = ", ".join(f"{key}={value}" for key, value in changed.items())
        event(logging.INFO, "limits", f"limits other than the defaults: {listed}", **changed)
