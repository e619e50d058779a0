"""`trio-chat gui` from start to end: the sign-in dialog, then the room, until it closes.

Trio runs as a guest inside Qt's event loop (`guest`): one thread, no locks. `GuiApp.run()`
is the whole program as one Trio function, so tests run it the same way.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import PySide6
import trio

from ..client import ChatClient, ClientConfig, connect, register
from ..display import quoted, safe
from ..errors import ChatError, ServerUnreachable
from ..keys import KeyFileError, KnownServers, Trust, first_use_notice
from ..stop_signals import stop_signals
from ..trust import key_within, takes_no_registrations, trust_server
from . import guest, memory, startup
from .problems import (
    NO_REGISTRATIONS,
    Field,
    Problem,
    SignInForm,
    form_problem,
    sign_in_problem,
)
from .room_window import RoomWindow
from .server_info import ServerInfo, server_info
from .session import RoomSession
from .sign_in_dialog import SignInDialog


def _problem(error: BaseException, form: SignInForm) -> Problem | None:
    """What to tell the person about a failed sign-in, also from inside Trio's exception
    groups: a refusal, a network error (no route to the host: the daemon is out of reach),
    or a `known_servers` file that cannot be read or written; None for anything else."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, KeyFileError):
        return Problem(safe(str(error)), Field.HOST)
    if isinstance(error, OSError):
        error = ServerUnreachable(error.strerror or str(error))
    return sign_in_problem(error, form) if isinstance(error, ChatError) else None


SETTLE = 0.3
"""Seconds the server and port stay as edited before the daemon there is asked whether it
takes registrations: not a datagram (nor a name looked up) for each key typed."""


class Stopped(Exception):
    """SIGTERM or SIGHUP: the program was told to end, with nobody to wait for."""


async def _on_stop_signals() -> None:
    """Raise `Stopped` at SIGTERM or SIGHUP (unless ignored, as under `nohup`): the room
    is left at once (the session says goodbye, as when Ctrl-C interrupts it), and the
    program ends with status 130. Ctrl-C is Trio's own KeyboardInterrupt."""
    wanted = [signum for signum in stop_signals() if signum != signal.SIGINT]
    with trio.open_signal_receiver(*wanted) as signals:
        async for _signum in signals:
            raise Stopped


class GuiApp:
    """The sign-in dialog, then the room. `dialog`, `window` and `chat` are there for
    whoever drives it (tests, the screenshot script) once they exist."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        name: str | None = None,
        *,
        memory_path: Path | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.memory_path = memory_path or memory.default_path()
        remembered = memory.load(self.memory_path)
        self.remembered = memory.Remembered(
            host=host or remembered.host,
            port=port or remembered.port,
            name=name if name is not None else remembered.name,
        )
        self.config = config
        self.dialog: SignInDialog | None = None
        self.window: RoomWindow | None = None
        self.chat: ChatClient | None = None
        self.session: RoomSession | None = None
        self._signing_in = False
        self._attempt: trio.CancelScope | None = None
        """The sign-in under way, until it is in or Cancel stops it (see `run`)."""
        self._nursery: trio.Nursery | None = None
        self._shown_up_to = 0
        """The newest message the ended session's window showed."""
        self._ended: trio.CancelScope | None = None
        """The watch over the window of a session that ended (`_wait_in_ended_room`)."""
        self._first_use: dict[str, str] = {}
        """The notice for each daemon whose key was trusted for the first time just now."""
        self._asking: trio.CancelScope | None = None
        """The question whether the daemon takes registrations, while one runs
        (`_ask_registrations`)."""

    @property
    def asking(self) -> bool:
        """Whether the daemon is being asked, in the background, if it takes registrations
        (“Create an account” ticked)."""
        return self._asking is not None

    async def run(self) -> None:
        dialog = SignInDialog(self.remembered)
        self.dialog = dialog
        dialog.show()
        signals = {
            "sign in": dialog.sign_in_requested,
            "cancel": dialog.cancelled,
            "create": dialog.create_account.toggled,
            "host": dialog.host.textChanged,
            "port": dialog.port.valueChanged,
        }
        try:
            async with trio.open_nursery() as nursery, guest.signal_channel(signals) as emissions:
                self._nursery = nursery
                nursery.start_soon(_on_stop_signals)
                async for emission in emissions:
                    if emission.source in ("create", "host", "port"):
                        self._ask_registrations(settle=emission.source != "create")
                        continue
                    if emission.source == "cancel":
                        self._stop_asking()
                        if self.window is None:
                            nursery.cancel_scope.cancel()  # signing in, if under way, stops
                            break
                        # Back to the room whose session ended, as it was left; a sign-in
                        # under way stops (before it logs in: what waits for the person
                        # stays waiting), and another may start at once.
                        if self._attempt is not None:
                            self._attempt.cancel()
                            self._attempt = None
                            self._signing_in = False
                            dialog.set_busy(False)
                        dialog.hide()
                        # The dialog has no parent: the room's window takes the keyboard
                        # back itself, not whichever window the desktop picks.
                        self.window.raise_()
                        self.window.activateWindow()
                        continue
                    if self._signing_in:
                        continue
                    form = dialog.form()
                    problem = form_problem(form)
                    if problem is not None:
                        dialog.show_problem(problem)
                        continue
                    self._stop_asking()  # the sign-in asks again, and checks the key
                    self._signing_in = True
                    nursery.start_soon(self._sign_in, form, nursery.cancel_scope)
        finally:
            dialog.hide()
            dialog.deleteLater()
            if self.window is not None:
                self.window.hide()
                self.window.deleteLater()

    def _ask_registrations(self, *, settle: bool) -> None:
        """“Create an account” ticked, or the server or port edited: the question under way
        is dropped, and while the box is ticked, the daemon is asked in the background
        whether it takes registrations (after `SETTLE` seconds for an edit)."""
        assert self.dialog is not None and self._nursery is not None
        self._stop_asking()
        form = self.dialog.form()
        if self._signing_in or not form.create or not form.host:
            return
        self._asking = trio.CancelScope()
        self._nursery.start_soon(self._registrations_asked, form, settle, self._asking)

    def _stop_asking(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
            self._asking = None

    async def _registrations_asked(
        self, form: SignInForm, settle: bool, asking: trio.CancelScope
    ) -> None:
        """Ask the daemon `form` names whether it takes registrations: if it says it takes
        none, “Create an account” is unticked and the dialog says so, before a password is
        typed for nothing. A daemon silent within the key's time, unreachable or saying
        nothing: nothing is said (signing in tells what it finds). Nothing is trusted from
        the answer; an answer for a server or port edited since, or a box unticked, is
        dropped."""
        dialog = self.dialog
        assert dialog is not None
        closed = False
        with asking:
            if settle:
                await trio.sleep(SETTLE)
            try:
                within = key_within(self.config)
                closed = await takes_no_registrations(form.host, form.port, within=within)
            except (ChatError, OSError):
                pass
        if self._asking is not asking:
            return  # dropped
        self._asking = None
        now = dialog.form()
        if closed and now.create and (now.host, now.port) == (form.host, form.port):
            dialog.create_account.setChecked(False)  # as the person would: no repeat field
            dialog.show_problem(NO_REGISTRATIONS, focus=False)

    async def _trusted_key(self, form: SignInForm) -> Trust:
        """The daemon's key, checked before a name or a password is sent, as the terminal
        does: a key met for the first time is trusted, remembered in the same
        `known_servers` file, and said so in the dialog; a changed one raises `KeyChanged`.
        With it, whether the daemon said it takes no registrations."""
        assert self.dialog is not None
        trusted = await trust_server(form.host, form.port, probe=True, config=self.config)
        if trusted.new:
            notice = first_use_notice(form.host, form.port, trusted, KnownServers().path)
            self._first_use[form.where] = notice
            self.dialog.show_notice(notice)
        return trusted

    async def _sign_in(self, form: SignInForm, done: trio.CancelScope) -> None:
        """Sign in (creating the account first if asked); on success, stay in the room until
        its window closes, then cancel `done`. On refusal, or when asked to sign in again
        once the session has ended, show the dialog and return (the ended room's window
        stays, and is the room again if the same person signs in to the same daemon)."""
        dialog = self.dialog
        assert dialog is not None
        where = safe(form.where)
        creating = f"Creating {quoted(form.name)} and signing in" if form.create else "Signing in"
        dialog.set_busy(True, f"{creating} to {where}…")
        dialog.show_notice(self._first_use.get(form.where, ""))
        with trio.CancelScope() as attempt:
            self._attempt = attempt  # Cancel stops it until it is in (`run`)
            async with contextlib.AsyncExitStack() as stack:
                try:
                    trusted = await self._trusted_key(form)
                    key = trusted.key
                    account = (form.host, form.port, form.name, form.password)
                    if form.create and trusted.no_registrations:
                        # Said with the key: nothing of the password is sent only to be
                        # refused. (A daemon saying nothing answers the `register` itself.)
                        if self._attempt is attempt:
                            self._attempt = None
                            self._signing_in = False
                            dialog.create_account.setChecked(False)
                            dialog.show_problem(NO_REGISTRATIONS)
                        return
                    if form.create:
                        await register(*account, config=self.config, server_key=key)
                        dialog.create_account.setChecked(False)  # it exists now: sign in next
                    chat = await stack.enter_async_context(
                        connect(*account, config=self.config, server_key=key)
                    )
                except BaseException as error:
                    problem = _problem(error, form)
                    if problem is None:
                        raise  # Cancel's too: the scope takes it
                    if self._attempt is attempt:
                        self._attempt = None
                        self._signing_in = False
                        dialog.show_problem(problem)
                    return
                if self._attempt is not attempt:
                    # Cancel came in the welcome's own turn: the scope, cancelled, cuts
                    # the session short as the block closes (the daemon sees it go
                    # silent), and the room that ended stays.
                    return
                self._attempt = None  # in: Cancel no longer reaches it
                memory.save(self.memory_path, memory.Remembered(form.host, form.port, chat.name))
                self.chat = chat
                dialog.hide()
                notices = [self._first_use[form.where]] if form.where in self._first_use else []
                ended, shown = self.window, self._shown_up_to
                window = self._room_window(server_info(chat), lambda: server_info(chat), notices)
                window.show()
                window.activateWindow()
                self.session = RoomSession(chat, window, shown if window is ended else 0)
                await self.session.run()
                if self.session.again:
                    # The session ended: its window stays as it is, the dialog comes back,
                    # filled in as it was.
                    self._shown_up_to = self.session.newest
                    self.session, self.chat = None, None
                    self._signing_in = False
                    dialog.reopen()
                    self._watch_ended_room(window, done)
                    return
                window.hide()
        if not attempt.cancelled_caught:
            done.cancel()

    def _room_window(
        self, signed_in: ServerInfo, info: Callable[[], ServerInfo], notices: list[str]
    ) -> RoomWindow:
        """The room's window for a session signed in as `signed_in` says: the ended
        session's own, going on, if it was the same person's on the same daemon (its
        conversations, unread counts and typed line kept), else a new one."""
        if self._ended is not None:
            self._ended.cancel()
            self._ended = None
        ended = self.window
        if ended is not None:
            before = ended.server_info
            if (before.where, before.fingerprint, before.name) == (
                signed_in.where,
                signed_in.fingerprint,
                signed_in.name,
            ):
                ended.go_on(info, notices)
                return ended
            ended.hide()
            ended.deleteLater()
        self.window = RoomWindow(signed_in.name, info, notices)
        return self.window

    def _watch_ended_room(self, window: RoomWindow, done: trio.CancelScope) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._wait_in_ended_room, window, done)

    async def _wait_in_ended_room(self, window: RoomWindow, done: trio.CancelScope) -> None:
        """While the window of a session that ended stays: its "Sign in again" brings the
        dialog back; closed, it ends the program, unless the dialog is open to sign in."""
        assert self.dialog is not None
        if self.session is not None:
            return  # signed in again before the watch began: the session has the window
        signals = {"again": window.sign_in_again, "closed": window.closed}
        dialog = self.dialog
        with trio.CancelScope() as self._ended:
            async with guest.signal_channel(signals) as emissions:
                if window.isVisible():  # else it was closed before the watch began
                    async for emission in emissions:
                        if emission.source == "closed":
                            break
                        if self._signing_in and dialog.isVisible():  # under way: as it is
                            dialog.raise_()
                            dialog.activateWindow()
                        else:
                            dialog.reopen()
            # Closed: the program ends, unless the dialog is open to sign in.
            if dialog.isVisible():
                self.window = None
                window.deleteLater()
            else:
                done.cancel()


def main(host: str | None, port: int | None, name: str | None) -> int:
    """Run the window until it closes; return the exit status."""
    startup.check(Path(PySide6.__file__).parent / "Qt")
    guest.application().setApplicationName("trio-chat")
    gui = GuiApp(host, port, name)
    try:
        guest.run(gui.run)
    except BaseException as error:
        if _interrupted(error):
            return 130
        raise
    return 0


def _interrupted(error: BaseException) -> bool:
    """Ctrl-C, SIGTERM or SIGHUP, also when it comes out of Trio's nurseries inside
    exception groups."""
    if isinstance(error, BaseExceptionGroup):
        matched, rest = error.split((KeyboardInterrupt, Stopped))
        return matched is not None and rest is None
    return isinstance(error, KeyboardInterrupt | Stopped)
