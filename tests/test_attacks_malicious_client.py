"""A malicious client with an account: it holds the keys of its own channel, can send any
record it likes, from its own address or a forged one, and keeps every ticket it was given.

It cannot act in another session (records under another session's index do not
authenticate), cannot log in with a ticket it forged, altered, took from another daemon
or kept past its expiry (`error` `ticket_invalid`), and cannot turn the daemon on a
victim by moving its session to the victim's address: until that address answers the
path challenge it gets at most three times what was sent from it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from trio_chat import wire
from trio_chat.engine import ServerConfig
from trio_chat.engine import sessions as sessions_module
from trio_chat.engine.notes import LoggedIn
from trio_chat.errors import TooManySessions
from trio_chat.records import Snapshot
from trio_chat.reliability import Link
from trio_chat.secure import (
    TICKET_AD,
    TICKET_NONCE_BYTES,
    Channel,
    DaemonKeys,
    Ticket,
    Tickets,
    password_mark,
)
from trio_chat.testing.driver import EngineDriver, Peer

ALICE = ("10.0.0.1", 4000)
BOB = ("10.0.0.2", 4000)
MALLORY = ("10.6.6.6", 6666)
VICTIM = ("192.0.2.7", 53)
LONG = "ü" * 240


TICKET_KEY = bytes(range(32))
"""The ticket key of `room`'s daemon, for the tickets of an older one to be sealed with."""


def room(config: ServerConfig | None = None) -> tuple[EngineDriver, Peer, Peer]:
    keys = DaemonKeys(DaemonKeys.generate().static_private, TICKET_KEY)
    driver = EngineDriver(config or ServerConfig(message_burst=1000), keys=keys)
    for name in ("alice", "bob", "mallory"):
        driver.add_account(name)
    alice = Peer(driver, "alice", address=ALICE)
    mallory = Peer(driver, "mallory", address=MALLORY)
    alice.settle()
    mallory.settle()
    driver.engine.take_notes()
    return driver, alice, mallory


def _long_history(driver: EngineDriver, messages: int = 60) -> None:
    """Bob says `messages` long ones: a history a small request asks much of."""
    bob = Peer(driver, "bob", address=BOB)
    for n in range(messages):
        bob.send(wire.Say(text=f"{n} {LONG}", cid=f"b{n}"))


def _settled_after_a_long_history(driver: EngineDriver, mallory: Peer) -> tuple[Channel, Link]:
    """`_long_history`, taken in by mallory: her channel and her link."""
    _long_history(driver)
    mallory.settle()
    channel = mallory.connection._channel
    assert channel is not None
    return channel, mallory.link


def test_records_under_another_sessions_index_are_dropped_and_change_nothing() -> None:
    driver, alice, mallory = room()
    engine = driver.engine
    victim = engine.sessions[alice.sid]
    before = (victim.address, victim.link.highest_pn, victim.link.received_up_to)
    channel = mallory.connection._channel
    assert channel is not None
    payload = (
        b'{"ack":0,"echo":0,"frames":[[1,{"t":"say","text":"I am alice","cid":"m1"}],'
        b'[2,{"t":"logout"}],[%d,{"t":"say","text":"next","cid":"m2"}]]}'
        % (alice.link.received_up_to + 1)
    )
    forged: list[bytes] = []
    for pn in (1, 7, 10**6):
        header = wire.data_header(alice.sid, pn)
        forged.append(header + channel._send.seal(pn, header, payload))  # Mallory's own keys
        own = channel.seal(pn + 1, payload)  # a record of hers, readdressed to Alice
        forged.append(header + own[wire.DATA_HEADER_BYTES :])
    for record in forged:
        for source in (MALLORY, ALICE):
            assert driver.receive(record, source) == []  # no RESET: nothing to learn
    assert engine.stats["bad_records"] == 2 * len(forged)
    assert (victim.address, victim.link.highest_pn, victim.link.received_up_to) == before
    assert driver.stored_messages() == [] and engine.stats["migrations"] == 0
    alice.send(wire.Say(text="still me", cid="a1"))
    assert [m.text for m in driver.stored_messages()] == ["still me"]
    assert alice.connection.connected and mallory.connection.connected


def _resume(
    driver: EngineDriver, ticket: str, address: tuple[str, int] = MALLORY
) -> wire.ServerFrame:
    """The daemon's answer to `resume` with `ticket`, on a new channel from `address`."""
    peer = Peer(driver, None, address=address)
    seq = peer.link.send(wire.encode(wire.Resume(ticket=ticket)))
    peer.flush()
    (answer,) = [f for f in peer.frames if getattr(f, "re", None) == seq]
    return answer


def unmarked(account_id: int, key: str, expires: float) -> str:
    """A ticket as daemons sealed them before tickets had a password mark (with `room`'s
    ticket key)."""
    plaintext = json.dumps({"a": account_id, "k": key, "e": round(expires)}).encode()
    nonce = os.urandom(TICKET_NONCE_BYTES)
    sealed = nonce + ChaCha20Poly1305(TICKET_KEY).encrypt(nonce, plaintext, TICKET_AD)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def test_a_ticket_holds_while_the_accounts_password_does() -> None:
    """A ticket names the password it was given under (a mark of its hash): the same
    password logs in; once the account's password is another (set anew by the operator,
    or an account made again under the same name after a restore), the account's tickets
    are worthless, and so is a ticket from before tickets had the mark (taken once, until
    it expired: a day)."""
    driver, _alice, _mallory = room()
    account = driver.engine.accounts["alice"]
    mark = password_mark(account.password_hash)
    same = driver.keys.tickets.seal(Ticket(account.id, "alice", driver.wall + 3600, mark))
    assert isinstance(_resume(driver, same), wire.Welcome)
    before_marks = _resume(driver, unmarked(account.id, "alice", driver.wall + 3600))
    assert isinstance(before_marks, wire.ErrorFrame) and before_marks.code == "ticket_invalid"
    # The daemon started again on the account with another password (its hash).
    accounts = [
        dataclasses.replace(a, password_hash="$argon2id$another") if a.key == "alice" else a
        for a in driver.stored_accounts()
    ]
    restarted = EngineDriver(
        snapshot=Snapshot(accounts=accounts, next_account_id=len(accounts) + 1),
        keys=driver.keys,
        first_sid=5000,
    )
    before = restarted.keys.tickets.seal(Ticket(account.id, "alice", driver.wall + 3600, mark))
    answer = _resume(restarted, before)
    assert isinstance(answer, wire.ErrorFrame) and answer.code == "ticket_invalid"


def test_forged_altered_foreign_and_expired_tickets_are_refused_with_ticket_invalid() -> None:
    driver, alice, mallory = room()
    engine = driver.engine
    alice_ticket, mallory_ticket = alice.connection.ticket, mallory.connection.ticket
    assert alice_ticket and mallory_ticket
    alice_id = engine.accounts["alice"].id
    mark = password_mark(engine.accounts["alice"].password_hash)  # each refused for one reason
    middle = len(mallory_ticket) // 2
    swapped = "A" if mallory_ticket[middle] != "A" else "B"
    elsewhere = DaemonKeys.generate()  # another daemon, with a ticket key of its own
    forgeries = {
        "random bytes": base64.urlsafe_b64encode(os.urandom(64)).decode().rstrip("="),
        "one character changed": mallory_ticket[:middle] + swapped + mallory_ticket[middle + 1 :],
        "cut short": mallory_ticket[:-4],
        "two spliced": mallory_ticket[:middle] + alice_ticket[middle:],
        "another daemon's": elsewhere.tickets.seal(
            Ticket(alice_id, "alice", driver.wall + 3600, mark)
        ),
        "a name that is not its account's": driver.keys.tickets.seal(
            Ticket(alice_id, "mallory", driver.wall + 3600, mark)
        ),
        "an account that does not exist": driver.keys.tickets.seal(
            Ticket(999, "nobody", driver.wall + 3600, mark)
        ),
        "from before tickets had a mark": unmarked(alice_id, "alice", driver.wall + 3600),
        # Alice's own, written another way: each text is one ticket, and only one.
        "in the other base64 alphabet": other_alphabet(driver, alice_id, mark),
        "padded": alice_ticket + "=" * (-len(alice_ticket) % 4 or 4),
        "with more after it": alice_ticket + "...",
        "with a spare bit set": spare_bit_set(alice_ticket),
        "given under another password": driver.keys.tickets.seal(
            Ticket(alice_id, "alice", driver.wall + 3600, password_mark("$argon2id$before"))
        ),
        "not base64": "!" * 40,
        "not ASCII": "é" * 40,
        "empty": "",
    }
    for n, (label, ticket) in enumerate(forgeries.items()):
        answer = _resume(driver, ticket, (f"10.66.{n}.1", 4000))  # more than an address may open
        assert isinstance(answer, wire.ErrorFrame), label
        assert answer.code == "ticket_invalid", label
    assert engine.stats["tickets_refused"] == len(forgeries)
    assert not any(isinstance(note, LoggedIn) for note in engine.take_notes())
    # Alice's own ticket is good for 24 hours, and not a second more.
    welcome = _resume(driver, alice_ticket)
    assert isinstance(welcome, wire.Welcome) and welcome.name == "alice"
    driver.now += engine.config.ticket_lifetime - 60
    assert isinstance(_resume(driver, alice_ticket), wire.Welcome)
    driver.now += 61
    expired = _resume(driver, alice_ticket)
    assert isinstance(expired, wire.ErrorFrame) and expired.code == "ticket_invalid"


def test_a_ticket_is_good_until_its_expiry_and_not_at_it() -> None:
    tickets = Tickets(os.urandom(32))
    ticket = Ticket(7, "alice", 1_700_000_000.0, password_mark("$argon2id$hash"))
    sealed = tickets.seal(ticket)
    assert tickets.open_untrusted(sealed, 1_699_999_999.5) == ticket
    assert tickets.open_untrusted(sealed, 1_700_000_000.0) is None


def test_a_ticket_sealed_under_the_key_but_not_a_tickets_fields_is_refused() -> None:
    """A daemon sharing the ticket key (another version, say) may seal what this one does
    not read as a ticket: it is refused like a forgery, never raised."""
    key = os.urandom(32)
    tickets = Tickets(key)
    for plaintext in (
        b"null",
        b"7",
        b'"alice"',
        b'[7, "alice", 1700000000, "mark"]',
        b'{"a": null, "k": "alice", "e": 1700000000, "p": "mark"}',
        b'{"a": 7, "k": "alice", "e": [], "p": "mark"}',
        b'{"a": 7, "k": "alice", "e": "soon", "p": "mark"}',
        b'{"a": 7, "k": "alice", "p": "mark"}',
        b"not json",
    ):
        nonce = os.urandom(TICKET_NONCE_BYTES)
        sealed = nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, TICKET_AD)
        text = base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        assert tickets.open_untrusted(text, 1_600_000_000.0) is None, plaintext


def test_password_marks_tell_a_thousand_password_hashes_apart() -> None:
    """A ticket is worth nothing after a password change only if the new password's mark
    differs from the old: 96 bits of the hash, not a few a change could meet again."""
    marks = {password_mark(f"$argon2id$v=19$m=19456,t=2,p=1$salt{n}$hash") for n in range(1000)}
    assert len(marks) == 1000
    assert all(len(base64.urlsafe_b64decode(mark)) == 12 for mark in marks)


def other_alphabet(driver: EngineDriver, account_id: int, mark: str) -> str:
    """A good ticket of the account's, in base64's other alphabet (`+/` for `-_`): one
    that has either, sealed anew until it has (a ticket's nonce is random)."""
    for _ in range(1000):
        ticket = driver.keys.tickets.seal(Ticket(account_id, "alice", driver.wall + 3600, mark))
        if "-" in ticket or "_" in ticket:
            return ticket.replace("-", "+").replace("_", "/")
    raise AssertionError("no ticket with a character the alphabets write apart")


def spare_bit_set(text: str) -> str:
    """Unpadded base64url `text` with a bit past its last byte flipped: it decodes to the
    same bytes (base64 has 2 or 4 such bits after a last group of 1 or 2 bytes)."""
    assert len(text) % 4 in (2, 3), "no bits spare"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    assert base64.urlsafe_b64decode(changed + "==") == base64.urlsafe_b64decode(text + "==")
    return changed


def test_a_stolen_ticket_cannot_be_renewed_past_its_24_hours_by_resuming() -> None:
    driver, alice, _mallory = room()
    lifetime = driver.engine.config.ticket_lifetime
    stolen = alice.connection.ticket  # from alice's password login, at most a second ago
    assert stolen
    start = driver.now
    # Mallory resumes with it before it expires, and again with each ticket she is given.
    ticket = stolen
    for _hour in range(23):
        driver.advance(3600)
        welcome = _resume(driver, ticket)
        assert isinstance(welcome, wire.Welcome) and welcome.name == "alice"
        ticket = welcome.ticket
    # The tickets a resume gives expire with the one it was given for: 24 hours after
    # the password was checked, and not a second more.
    driver.advance(start + lifetime - 60 - driver.now)
    welcome = _resume(driver, ticket)
    assert isinstance(welcome, wire.Welcome)
    driver.advance(61)
    for held in (stolen, ticket, welcome.ticket):
        expired = _resume(driver, held)
        assert isinstance(expired, wire.ErrorFrame) and expired.code == "ticket_invalid"


def test_moving_a_session_to_a_victim_sends_it_at_most_three_times_what_came_from_it() -> None:
    driver, _alice, mallory = room()
    engine = driver.engine
    _long_history(driver)
    mallory.settle()
    delivered_to_mallory = driver.sent_to[MALLORY]
    # Mallory asks for 100 long messages, in a record forged to come from the victim.
    mallory.link.send(wire.encode(wire.HistoryRequest(limit=100)))
    for record in mallory.link.datagrams_to_send(driver.now):
        driver.receive(record, VICTIM)
    session = engine.sessions[mallory.sid]
    assert session.address == VICTIM and not session.validated
    # She keeps the victim's budget topped up with pings from its address (for less than
    # the 20 s after which the daemon gives up a session that acknowledges nothing).
    for _second in range(15):
        mallory.link.send(wire.encode(wire.Ping()))
        for record in mallory.link.datagrams_to_send(driver.now):
            driver.receive(record, VICTIM)
        driver.advance(1.0)
        assert driver.sent_to[VICTIM] <= 3 * driver.received_from[VICTIM]
    assert not session.validated
    assert driver.sent_to[VICTIM] > 0
    assert driver.sent_to[MALLORY] == delivered_to_mallory
    # Back at her own address she answers the challenge and gets it all, once.
    mallory.send()
    mallory.settle(60)
    assert session.address == MALLORY and session.validated
    history = [m.text for m in mallory.of_type(wire.Msg) if m.history]
    assert history == [f"{n} {LONG}" for n in range(60)]


def test_a_session_parked_at_a_victim_that_never_acknowledges_is_given_up() -> None:
    driver, _alice, mallory = room()
    engine = driver.engine
    _long_history(driver, 30)
    mallory.link.send(wire.encode(wire.HistoryRequest(limit=100)))
    for record in mallory.link.datagrams_to_send(driver.now):
        driver.receive(record, VICTIM)
    sid = mallory.sid
    seconds = 0
    while sid in engine.sessions and seconds < 120:
        mallory.link.send(wire.encode(wire.Ping()))
        for record in mallory.link.datagrams_to_send(driver.now):
            driver.receive(record, VICTIM)
        driver.advance(1.0)
        seconds += 1
        assert driver.sent_to[VICTIM] <= 3 * driver.received_from[VICTIM]
    # Pings from the victim's address keep it heard from, but nothing it was sent there is
    # ever acknowledged: the daemon gives the session up as it would any silent peer.
    assert sid not in engine.sessions
    link = engine.config.link
    assert seconds <= link.give_up_after + 1  # at its give-up moment


def test_a_session_that_logs_out_from_a_victim_is_not_sent_again_beyond_its_budget() -> None:
    """Mallory asks for a long history and acknowledges none of it, moves her session to
    the victim's address with big records (a big budget there), and logs out from there:
    the daemon keeps the ended channel's last datagrams, everything unacknowledged, for
    30 s, to send again to a logout sent again. Small records of the ended channel "from"
    the victim still get it no more than three times what came from it."""
    driver, _alice, mallory = room()
    channel, link = _settled_after_a_long_history(driver, mallory)
    link.send(wire.encode(wire.HistoryRequest(limit=100)))
    for record in link.datagrams_to_send(driver.now):
        driver.receive(record, MALLORY)  # at home: the history comes, and is not acknowledged
    for _record in range(5):  # big records from the victim earn a big budget there
        link._pn += 1
        driver.receive(channel.seal(link._pn, b'{"ack":0' + b" " * 1100 + b"}"), VICTIM)
    link.send(wire.encode(wire.Logout()))
    for record in link.datagrams_to_send(driver.now):
        driver.receive(record, VICTIM)
    assert mallory.sid not in driver.engine.sessions
    for k in range(100):
        driver.receive(channel.seal(10_000 + k, b'{"frames":[[1,{"t":"ping"}]]}'), VICTIM)
        assert driver.sent_to[VICTIM] <= 3 * driver.received_from[VICTIM]
    assert driver.sent_to[VICTIM] > 0  # what the budget allows still goes


def test_the_last_datagrams_kept_for_ended_sessions_are_bounded_in_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sessions that end with much unacknowledged (a long history never acknowledged)
    leave their last datagrams for 30 s: past `FAREWELL_BYTES` in all, the oldest are
    forgotten, and a record of a forgotten one is answered `RESET`."""
    monkeypatch.setattr(sessions_module, "FAREWELL_BYTES", 10_000)
    driver, _alice, _mallory = room()
    _long_history(driver)
    channels = []
    for k in range(6):
        reader = Peer(driver, "mallory", address=(f"10.6.6.{k + 10}", 6666))
        channels.append(reader.connection._channel)
        for frame in (wire.HistoryRequest(limit=100), wire.Logout()):
            reader.link.send(wire.encode(frame))
            for record in reader.link.datagrams_to_send(driver.now):
                driver.receive(record, reader.address)  # the history: never acknowledged
    kept = driver.engine.transport._farewell_bytes
    assert 0 < kept <= 10_000
    first = channels[0]
    assert first is not None
    answer = driver.receive(
        first.seal(10_000, b'{"frames":[[1,{"t":"ping"}]]}'), ("10.6.6.10", 6666)
    )
    assert [wire.parse_datagram_untrusted(data).__class__ for data in answer] == [wire.Reset]


def test_records_from_the_old_address_earn_the_victims_address_nothing() -> None:
    """Mallory moves her session to the victim's address, then sends big records from her
    own with older packet numbers (they do not move it back): what came from her address
    is not counted as having come from the victim's."""
    driver, _alice, mallory = room()
    channel, link = _settled_after_a_long_history(driver, mallory)
    older = link._pn + 1
    link._pn += 20  # packet numbers kept back, to be sent after the move
    link.send(wire.encode(wire.HistoryRequest(limit=100)))
    for record in link.datagrams_to_send(driver.now):
        driver.receive(record, VICTIM)
    session = driver.engine.sessions[mallory.sid]
    assert session.address == VICTIM and not session.validated
    for pn in range(older, older + 20):
        driver.receive(channel.seal(pn, b'{"ack":0' + b" " * 1100 + b"}"), MALLORY)
        assert session.address == VICTIM
        assert driver.sent_to[VICTIM] <= 3 * driver.received_from[VICTIM]
    assert driver.sent_to[VICTIM] > 0


def test_a_login_replaces_only_a_session_of_its_own_account() -> None:
    """At her account's cap, Mallory logs in again naming Alice's session as the lost one
    it replaces: it is not hers, so nothing of Alice's ends and the cap holds. Naming her
    own, the login gets in and her old session ends."""
    driver, alice, mallory = room(ServerConfig(message_burst=1000, max_sessions_per_account=1))
    other = Peer(driver, "mallory", address=("10.6.6.7", 1), login=False)
    other.connection._replaces = alice.sid
    other.login()
    assert isinstance(other.connection.failure, TooManySessions)
    assert alice.sid in driver.engine.sessions
    back = Peer(driver, "mallory", address=("10.6.6.8", 1), login=False)
    back.connection._replaces = mallory.sid
    back.login()
    assert back.connection.connected
    assert mallory.sid not in driver.engine.sessions
    assert alice.sid in driver.engine.sessions
