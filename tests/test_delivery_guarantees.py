"""Delivery guarantees across lost sessions: nothing acknowledged or shown goes missing."""

from __future__ import annotations

import pytest

from tests.test_hostile_daemon import TS, HostileDaemon
from trio_chat import wire
from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.engine import ServerConfig
from trio_chat.engine.history import HistoryWindow
from trio_chat.events import Disconnected, Event, History, Notice, PrivateMessage, Reconnected
from trio_chat.records import MarkDelivered, Message
from trio_chat.testing.driver import PASSWORD, WALL, EngineDriver, Peer
from trio_chat.testing.netsim import Conditions
from trio_chat.testing.simulation import Simulation, shown_messages

ALICE = ("127.0.0.1", 40001)
BOB = ("127.0.0.1", 40002)
RESUMING = ClientConfig(reconnect=True, retry_rate_limited=False)


def shown(events: list[Event]) -> list[str]:
    """The texts of every message shown, live or in a history, in order."""
    return [message.text for message in shown_messages(events)]


def test_a_private_message_held_out_of_order_is_not_delivered_until_it_is_in_order() -> None:
    """A whisper that reached the client ahead of a lost frame is only held by its link:
    the session is lost before the gap is filled, so it was never shown. It must still
    wait in the mailbox, and come with the history of the next login."""
    h = EngineDriver(now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    alice = Peer(h, "alice", address=ALICE, config=RESUMING)
    bob = Peer(h, "bob", address=BOB)
    assert alice.connection.ready and bob.connection.ready
    h.inbox.pop(ALICE, None)
    alice.events.clear()

    bob.send(wire.Say(text="in the room", cid="b1"))
    lost = h.inbox.pop(ALICE)  # the datagram with the public message never arrives
    assert lost
    bob.send(wire.Whisper(to="alice", text="just for you", cid="b2"))
    alice.poll()  # the whisper arrives, ahead of the gap: held, and acknowledged at once
    alice.flush()
    assert "just for you" not in shown(alice.events)

    # Alice's client loses the session (the daemon's port refused a datagram, say) and
    # comes back with her ticket, before the public message was sent again.
    alice.connection.connection_refused(h.now)
    alice.flush()
    assert any(isinstance(e, Reconnected) for e in alice.events)
    alice.settle()
    assert shown(alice.events) == ["in the room", "just for you"]
    assert not any(isinstance(op, MarkDelivered) for op in h.uncommitted)


def lose_session_and_resume(peer: Peer, delivered: int | None = None) -> None:
    """The peer's client loses its session and logs in again with its ticket; of the
    datagrams that answer its `resume` (the welcome, the history, `ready`), only the
    first `delivered` arrive (all, with None)."""
    h, connection = peer.driver, peer.connection
    connection.connection_refused(h.now)
    answered = False
    for _round in range(10):
        datagrams = connection.datagrams_to_send(h.now)
        if not datagrams:
            break
        for data in datagrams:
            replies = h.receive(data, peer.address)
            if not answered and connection.channel is not None and connection.link is not None:
                answered = data[0] == wire.DATA and bool(replies)
                if answered and delivered is not None:
                    replies = replies[:delivered]  # the rest is lost on the way
            peer.take(replies)
    peer.poll()


def test_history_cut_off_by_a_second_loss_is_shown_after_the_next_login() -> None:
    """Alice comes back after an outage; the history of what she missed starts to arrive,
    and the session is lost again before its `ready`. The messages that did arrive were
    neither shown nor are they sent again (her client has seen them): they must be shown
    with the history of the next login."""
    h = EngineDriver(now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    alice = Peer(h, "alice", address=ALICE, config=RESUMING)
    bob = Peer(h, "bob", address=BOB)
    h.inbox.pop(ALICE, None)
    alice.events.clear()
    said = [f"{n} " + "x" * 400 for n in range(8)]  # two messages a datagram
    for n, text in enumerate(said):
        bob.send(wire.Say(text=text, cid=f"b{n}"))
    h.inbox.pop(ALICE)  # alice is away: none of it reaches her

    lose_session_and_resume(alice, delivered=3)
    assert len(alice.of_type(wire.Msg)) == 5  # part of the history arrived
    assert not any(isinstance(e, History) for e in alice.events)  # its `ready` did not
    lose_session_and_resume(alice)
    alice.settle()
    assert shown(alice.events) == said


def test_a_resume_after_a_restart_whose_recent_messages_are_all_private() -> None:
    """The daemon starts again with only private messages among its most recent ones
    (its window of recent messages holds no public one). A client resuming from the
    last public message is welcomed, shown what it missed, and takes part in the room."""
    sim = Simulation(21, Conditions(delay=0.002), config=ServerConfig(window_messages=3))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    first = bob.say("in the room")
    sim.run_until(lambda: first.done)
    whispers = [bob.whisper("bob", f"note {n}") for n in range(3)]  # notes to himself
    sim.run_until(lambda: all(w.done for w in whispers))
    sim.run(1.0)
    sim.restart_daemon(down_for=1.0)
    sim.run_until(lambda: any(isinstance(e, Reconnected) for e in sim.events["alice"]), 30.0)
    after = bob.say("after the restart")
    sim.run_until(lambda: after.done and "after the restart" in shown(sim.events["alice"]), 30.0)
    assert shown(sim.events["alice"]) == ["in the room", "after the restart"]


def test_a_session_whose_new_address_answers_the_challenge_sends_what_waited() -> None:
    """Bob's NAT gives him a new address while a message to him is in flight. What the
    daemon sends the new address is capped until it answers the challenge, and the
    first datagrams there are lost. Once Bob's answer proves the address, the message
    that waited goes out at once, not when the session is next looked at for silence
    (by when the daemon would have given him up)."""
    h = EngineDriver(now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    alice = Peer(h, "alice", address=ALICE)
    bob = Peer(h, "bob", address=BOB)
    h.inbox.pop(BOB, None)
    alice.send(wire.Say(text="are you there?", cid="a1"))
    assert h.inbox.pop(BOB)  # sent to the old address: lost
    bob.address = moved = ("10.77.0.2", 5555)

    def ping_from_new_address() -> list[bytes]:
        bob.link.send(wire.encode(wire.Ping()))
        replies: list[bytes] = []
        for data in bob.connection.datagrams_to_send(h.now):
            replies += h.receive(data, moved)
        return replies

    assert ping_from_new_address()  # the challenge (and what fits with it): lost
    h.advance(5.0)
    h.inbox.pop(moved, None)
    bob.take(ping_from_new_address())  # the challenge again: answered at once
    for data in bob.connection.datagrams_to_send(h.now):
        bob.take(h.receive(data, moved))
    assert bob.session.validated
    bob.take(h.advance(0.5, moved))  # its probe timeout passed long ago
    assert [f.text for f in bob.of_type(wire.Msg)] == ["are you there?"]


def test_messages_refused_as_too_fast_keep_their_order_when_refusals_cross_resends() -> None:
    """After two restarts Bob's client resends nine messages to a daemon that takes two
    at once; refusals come back while resent copies are on their way, and the answers
    to some resent messages are still on the way when the first refused ones may go
    again. Every message is stored, and shown, in the order it was written."""
    stormy = Conditions(loss=0.1, duplicate=0.1, reorder=0.5, delay=0.01, jitter=0.01)
    sim = Simulation(270, config=ServerConfig(message_burst=2))
    clients = {name: sim.client(name) for name in ("alice", "bob", "carol")}
    for n, client in enumerate(clients.values()):
        client.keepalive_lead = n / 3
    sim.run_until(lambda: all(c.ready for c in clients.values()), 10.0)
    for label in sim.network.conditions:
        sim.network.conditions[label] = stormy
    bob = clients["bob"]
    said = [bob.say(f"m{n}") for n in range(1, 6)]
    sim.restart_daemon(down_for=0.5)
    said += [bob.say(f"m{n}") for n in range(6, 10)]
    sim.restart_daemon(down_for=0.5)
    sim.run_until(lambda: all(h.done for h in said), 600.0)
    sim.run(30.0)
    written = [f"m{n}" for n in range(1, 10)]
    assert [m.text for m in sim.driver.stored_messages()] == written
    assert [text for sender, text in senders(sim.events["alice"]) if sender == "bob"] == written
    # Every copy's answer is in: no message is waited for any more, under any number.
    assert [handle for handle in bob._outstanding.numbers().values() if handle.kind == "say"] == []


def test_a_message_refused_while_its_sender_was_cut_off_is_not_overtaken() -> None:
    """Found by `test_delivery_properties`: alice's third message in a moment is refused
    as too fast, and the refusal is lost as her network goes down for 12 s. Back, she
    writes another, which reached the daemon more than `retry_after` + 10 s after the
    refusal and was stored at once, before the refused one that she had not yet been
    told to send again."""
    weather = Conditions(loss=0.1, reorder=0.2, delay=0.002, jitter=0.001)
    sim = Simulation(
        1, config=ServerConfig(message_burst=2), client_config=ClientConfig(reconnect_delay_max=1.0)
    )
    clients = [sim.client(name) for name in ("alice", "bob", "carol")]
    for n, client in enumerate(clients):
        client.keepalive_lead = n / 3
    sim.run_until(lambda: all(client.ready for client in clients), 10.0)
    for label in sim.network.conditions:
        sim.network.conditions[label] = weather
    alice = clients[0]

    def cut(seconds: float) -> None:
        sim.network.conditions["alice"] = Conditions(loss=1.0)
        sim.run(seconds)
        sim.network.conditions["alice"] = weather

    said = [alice.say("m1")]
    cut(0.5)
    said += [alice.say("m2"), alice.say("m3")]
    sim.run(0.001)
    said.append(alice.say("m4"))
    sim.run(0.01)
    cut(12.0)
    said.append(alice.say("m5"))
    sim.run_until(lambda: all(handle.done for handle in said), 60.0)
    assert [handle.error for handle in said] == [None] * 5
    assert [m.text for m in sim.driver.stored_messages()] == ["m1", "m2", "m3", "m4", "m5"]


@pytest.mark.parametrize(("seed", "after"), [(0, 0.05), (1, 0.3), (2, 1.0), (3, 0.05)])
def test_a_program_that_blocks_its_loop_while_messages_wait_to_be_resent_keeps_their_order(
    seed: int, after: float
) -> None:
    """A bot's `time.sleep(15)` in Trio code while messages refused as too fast wait:
    for more than the daemon's 10 s of grace nothing is resent. The daemon has had every
    frame sent before (its refusals acknowledge them), so the first message it reads
    afterwards is the refused one, sent again first: the grace over, it is stored, and
    those after it follow in order."""
    weather = Conditions(loss=0.2, delay=0.005, jitter=0.002)
    sim = Simulation(seed, weather, config=ServerConfig(message_rate=5.0, message_burst=3))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    said = [alice.say(f"m{n}") for n in range(8)]
    sim.run(after)  # refusals in (and acknowledged), or some resent already
    sim.stall_client("alice", 15.0)
    said += [alice.say(f"m{n}") for n in range(8, 10)]
    sim.run_until(lambda: all(handle.done for handle in said), 120.0)
    assert [handle.error for handle in said] == [None] * 10
    assert [m.text for m in sim.driver.stored_messages()] == [f"m{n}" for n in range(10)]


def senders(events: list[Event]) -> list[tuple[str, str]]:
    """(sender, text) of every message shown, live or in a history, in order."""
    return [(message.sender, message.text) for message in shown_messages(events)]


def resent_after_a_refusal(daemon: HostileDaemon, client: ClientConnection) -> list[int]:
    """Send the client's two messages, refuse the first as too fast, and let both go again
    once the wait is over (the one after it goes with it): the four copies' numbers."""
    daemon.step(client)
    first = next(seq for seq, frame in daemon.frames if isinstance(frame, wire.Say | wire.Whisper))
    refusal = wire.ErrorFrame(code="rate_limited", message="Slow down.", re=first, retry_after=1.0)
    daemon.send(client, refusal)
    daemon.step(client, 1.5)
    daemon.step(client)
    copies = [seq for seq, frame in daemon.frames if isinstance(frame, wire.Say | wire.Whisper)]
    assert len(copies) == 4
    return copies


def test_the_answers_to_both_copies_of_a_resent_message_leave_nothing_waiting() -> None:
    """A message in flight when an earlier one is refused as too fast goes again with it:
    the answers to both its copies come, and neither leaves the message waited for."""
    daemon, client = HostileDaemon.with_client()
    first, second = client.say("m1"), client.say("m2")
    _a, b, c, d = resent_after_a_refusal(daemon, client)
    says = [frame.text for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]
    assert says == ["m1", "m2", "m1", "m2"]
    daemon.send(client, wire.Ok(re=b, id=2, ts=TS))  # m2's first copy was taken
    daemon.send(client, wire.Ok(re=c, id=3, ts=TS))
    daemon.send(client, wire.Ok(re=d, id=2, ts=TS))  # the same answer, for the copy
    assert first.done and second.done
    assert [
        handle for handle in client._outstanding.numbers().values() if handle.kind == "say"
    ] == []


def test_a_logins_history_says_the_newest_message_the_daemon_had() -> None:
    """`ready`'s `upto`, as `History.newest`: a program's page of the latest messages then
    holds what the history left out (its own private ones, read before)."""
    daemon = HostileDaemon()
    client = daemon.client()
    client.start(daemon.now)
    for _ in range(50):
        daemon.step(client)
    daemon.send(client, wire.Welcome(re=daemon.seq_of(wire.Login), name="alice"))
    daemon.send(client, wire.Ready(count=0, upto=9))
    assert [event for event in daemon.events if isinstance(event, History)] == [
        History((), more=False, newest=9)
    ]


def test_a_login_once_answered_is_waited_on_under_no_number() -> None:
    """Welcomed (or refused), the login's number was still among those answers are matched
    by until the next channel: an `ok` naming it would have been taken as its answer."""
    daemon, client = HostileDaemon.with_client()
    assert client._outstanding.numbers() == {}
    said = client.say("m1")
    daemon.step(client)
    assert list(client._outstanding.numbers().values()) == [said]
    refused = HostileDaemon()
    other = refused.client()
    other.start(refused.now)
    for _ in range(50):
        refused.step(other)
    login = refused.seq_of(wire.Login)
    refused.send(other, wire.ErrorFrame(code="busy", message="Busy.", re=login, retry_after=1.0))
    assert other._outstanding.numbers() == {}


def test_a_refusal_of_a_copy_sent_before_the_one_on_its_way_waits_for_that_ones_answer() -> None:
    """A message in flight when an earlier one is refused as too fast goes again with it;
    its first copy's refusal, which comes after, is no news: the copy on its way is
    answered, and the message is not sent a third time."""
    daemon, client = HostileDaemon.with_client()
    first, second = client.say("m1"), client.say("m2")
    _a, b, c, d = resent_after_a_refusal(daemon, client)
    behind = wire.ErrorFrame(code="rate_limited", message="Slow down.", re=b, retry_after=1.0)
    daemon.send(client, behind)  # m2's first copy, refused behind m1
    daemon.send(client, wire.Ok(re=c, id=1, ts=TS), wire.Ok(re=d, id=2, ts=TS))
    assert first.done and second.done and second.error is None
    assert second.result.id == 2
    daemon.step(client, 1.5)
    daemon.step(client)
    says = [frame.text for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]
    assert says == ["m1", "m2", "m1", "m2"]


def test_a_refusal_as_busy_that_says_no_time_is_waited_out_a_second() -> None:
    daemon, client = HostileDaemon.with_client()
    said = client.say("m1")
    daemon.step(client)
    busy = wire.ErrorFrame(code="busy", message="Busy.", re=daemon.seq_of(wire.Say))
    daemon.send(client, busy)
    for seconds in (0.5, 0.4, 0.0):
        daemon.step(client, seconds)
    assert len([frame for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]) == 1
    daemon.step(client, 0.2)  # a second after the refusal
    daemon.step(client)
    assert len([frame for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]) == 2
    assert not said.done


@pytest.mark.parametrize("wait", [0.0, 0.25])
def test_a_refusal_as_too_fast_is_waited_out_as_long_as_it_says_and_no_longer(
    wait: float,
) -> None:
    """A `retry_after` of 0 is "now", not the second waited when it says no time."""
    daemon, client = HostileDaemon.with_client()
    said = client.say("m1")
    daemon.step(client)
    refusal = wire.ErrorFrame(
        code="rate_limited", message="Slow down.", re=daemon.seq_of(wire.Say), retry_after=wait
    )
    daemon.send(client, refusal)
    refused_at = daemon.now - 0.01  # `send` lets 10 ms pass after the client took it
    while len([frame for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]) == 1:
        assert daemon.now < refused_at + 2.0
        daemon.step(client)
    assert refused_at + wait <= daemon.now <= refused_at + wait + 0.02
    assert not said.done


def test_a_refusal_of_both_copies_of_a_resent_whisper_is_told_once() -> None:
    """A whisper in flight when an earlier message is refused as too fast goes again with
    it; both its copies are refused (no such account): it fails once, and the second
    refusal is not shown as a notice of its own."""
    daemon, client = HostileDaemon.with_client()
    first, whisper = client.say("m1"), client.whisper("nobody", "psst")
    _a, b, _c, d = resent_after_a_refusal(daemon, client)
    unknown = "There is no account named 'nobody'."
    daemon.send(client, wire.ErrorFrame(code="unknown_user", message=unknown, re=b))
    daemon.send(client, wire.ErrorFrame(code="unknown_user", message=unknown, re=d))
    assert whisper.done and whisper.error is not None
    assert not [event for event in daemon.events if isinstance(event, Notice)]
    assert client._outstanding.answering(d) is None and client._outstanding.answering(b) is None
    assert not first.done  # m1's answer is still to come


def test_a_session_that_comes_back_is_shown_the_private_messages_its_account_had_meanwhile() -> (
    None
):
    """Alice is in the room on two devices; one loses its session for a while. Meanwhile
    bob whispers to her (her other device receives it, so it leaves her mailbox), and she
    writes to bob and to herself from the other device. The device that comes back is
    shown all three, as it would have been had it stayed."""
    h = EngineDriver(now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    away = Peer(h, "alice", address=ALICE, config=RESUMING)
    other = Peer(h, "alice", address=("127.0.0.1", 40003))
    bob = Peer(h, "bob", address=BOB)
    bob.send(wire.Say(text="before", cid="b0"))
    away.settle()
    other.settle()
    away.events.clear()

    bob.send(wire.Whisper(to="alice", text="to alice", cid="b1"))
    other.settle()  # received and acknowledged on her other device
    other.send(wire.Whisper(to="bob", text="to bob", cid="a1"))
    other.send(wire.Whisper(to="alice", text="note to self", cid="a2"))
    bob.send(wire.Say(text="in the room", cid="b2"))
    h.inbox.pop(ALICE)  # none of it reaches the device that is away

    away.connection.connection_refused(h.now)
    away.flush()
    away.settle()
    assert any(isinstance(e, Reconnected) for e in away.events)
    assert shown(away.events) == ["to alice", "to bob", "note to self", "in the room"]
    (ready,) = [f for f in away.frames if isinstance(f, wire.Ready)][-1:]
    assert ready == wire.Ready(count=4, upto=5)


def test_the_private_messages_of_a_resume_are_the_newest_and_their_cut_is_told() -> None:
    def message(id: int, sender: int, recipient: int | None) -> Message:
        return Message(id, "2026-01-01T00:00:00.000Z", sender, "x", "t", recipient, "y", f"c{id}")

    alice, bob, carol = 1, 2, 3
    window = HistoryWindow(100)
    for m in [
        message(1, bob, alice),
        message(2, alice, bob),
        message(3, bob, carol),  # not hers
        message(4, bob, None),  # public
        message(5, alice, alice),
        message(6, carol, alice),
    ]:
        window.add(m)
    assert [m.id for m in window.private_after(alice, 1, 10)[0]] == [2, 5, 6]
    assert window.private_after(alice, 1, 2) == (
        [message(5, alice, alice), message(6, carol, alice)],
        True,
    )
    assert window.private_after(alice, 6, 2) == ([], False)


def test_a_resume_is_told_more_only_when_messages_newer_than_since_were_left_out() -> None:
    """Ids have gaps (private messages between public ones, messages that could not be
    stored): the window forgetting its oldest public message, older than `since`, is no
    cut; forgetting one newer than `since` is."""

    def message(id: int, recipient: int | None = None) -> Message:
        return Message(id, "2026-01-01T00:00:00.000Z", 1, "x", "t", recipient, None, f"c{id}")

    window = HistoryWindow(2)
    for m in [message(1), message(2, recipient=2), message(3), message(4)]:
        window.add(m)
    assert window.after(1, 10) == ([message(3), message(4)], False)
    assert window.after(0, 10) == ([message(3), message(4)], True)
    # As loaded after a restart: the newest messages of all kinds, and how many are public.
    loaded = HistoryWindow(3, [message(5, 2), message(6, 2), message(7)], public_count=4)
    assert loaded.after(4, 10) == ([message(7)], False)
    assert loaded.after(3, 10) == ([message(7)], True)
    # The private messages the window forgot are a cut as well.
    assert loaded.private_after(1, 4, 10) == ([message(5, 2), message(6, 2)], False)
    assert loaded.private_after(1, 3, 10)[1]
    # Every public message loaded: none forgotten, so no cut however old `since` is.
    whole = HistoryWindow(3, [message(5, 2), message(6)], public_count=1)
    assert whole.after(3, 10) == ([message(6)], False)


def test_the_window_forgets_the_client_ids_of_the_messages_it_lets_go() -> None:
    """Else it would hold every `cid` the daemon ever took (the store knows the old ones)."""

    def message(id: int) -> Message:
        return Message(id, "2026-01-01T00:00:00.000Z", 1, "x", "t", None, None, f"c{id}")

    window = HistoryWindow(2)
    for id in (1, 2, 3):
        window.add(message(id))
    assert window.find(1, "c1") is None
    assert window.find(1, "c2") == message(2)


def test_a_resume_with_exactly_as_many_messages_as_it_may_show_is_told_no_cut() -> None:
    def message(id: int, recipient: int | None) -> Message:
        return Message(id, "2026-01-01T00:00:00.000Z", 1, "x", "t", recipient, "y", f"c{id}")

    window = HistoryWindow(10)
    public = [message(id, None) for id in (1, 2, 3)]
    private = [message(id, 2) for id in (4, 5, 6)]
    for m in (*public, *private):
        window.add(m)
    assert window.after(0, 3) == (public, False)
    assert window.private_after(1, 0, 3) == (private, False)
    assert window.after(0, 2)[1] and window.private_after(1, 0, 2)[1]


def test_a_private_message_that_could_not_be_stored_is_no_part_of_a_resume() -> None:
    """Its sender was told it failed: the account's other sessions, coming back, must not
    be shown it as what they had meanwhile."""

    def message(id: int, recipient: int | None) -> Message:
        return Message(id, "2026-01-01T00:00:00.000Z", 1, "x", "t", recipient, "y", f"c{id}")

    window = HistoryWindow(10)
    stored, failed = message(1, 2), message(2, 2)
    window.add(stored)
    window.add(failed)
    window.forget(failed)
    assert window.private_after(1, 0, 10) == ([stored], False)
    assert window.find(1, "c2") is None


def test_the_operators_removals_keep_the_count_of_older_history_right() -> None:
    """A first login is told there is older history (`more`) only if there is: removing
    a message the window holds, or an older one it only counts, takes one off."""

    def message(id: int) -> Message:
        return Message(id, "2026-01-01T00:00:00.000Z", 1, "x", "t", None, None, f"c{id}")

    window = HistoryWindow(2)
    for id in (1, 2, 3, 4):
        window.add(message(id))
    window.unsay(1)  # older than the window holds: 2, 3 and 4 are left
    assert window.latest(2) == ([message(3), message(4)], True)
    window.unsay(2)
    assert window.latest(2) == ([message(3), message(4)], False)
    window.unsay(4)  # one the window holds
    assert window.latest(2) == ([message(3)], False)
    assert window.latest(0) == ([], True)


def test_a_resume_is_not_told_more_for_public_messages_it_was_sent() -> None:
    """The window keeps the newest public messages, and the newest of all kinds for
    resends: the latter dropping a public message that the former still holds, and
    sends, is no cut. Here others' private talk pushed bob's message out of the latter."""
    config = ServerConfig(window_messages=3)
    h = EngineDriver(config=config, now=100.0)
    for name, address in (("alice", ALICE), ("bob", BOB), ("carol", ("127.0.0.1", 40003))):
        h.add_account(name, PASSWORD, address)
    away = Peer(h, "alice", address=ALICE, config=RESUMING)
    bob = Peer(h, "bob", address=BOB)
    carol = Peer(h, "carol", address=("127.0.0.1", 40003))
    bob.send(wire.Say(text="seen", cid="b0"))
    away.settle()
    away.events.clear()

    bob.send(wire.Say(text="while away", cid="b1"))
    for n in range(3):
        carol.send(wire.Whisper(to="bob", text=f"between them {n}", cid=f"c{n}"))
    h.inbox.pop(ALICE)  # none of it reaches her

    away.connection.connection_refused(h.now)
    away.flush()
    away.settle()
    assert shown(away.events) == ["while away"]
    (ready,) = [f for f in away.frames if isinstance(f, wire.Ready)][-1:]
    assert ready == wire.Ready(count=1, more=False, upto=5)


def test_a_private_message_that_comes_after_the_logout_left_is_shown_if_it_is_ones_own() -> None:
    """Once the logout is out, what the daemon sends is never acknowledged: a private
    message to this account from someone else stays waiting for the next login, and is
    shown there, not now too. One this account sent (from another device) waits for
    nobody: it is shown now."""
    daemon, client = HostileDaemon.with_client()
    leaving = client.logout()
    daemon.answer(client, leaving, wire.Logout)

    def pm(id: int, sender: str, to: str) -> bytes:
        frame = {"t": "pm", "id": id, "ts": TS, "from": sender, "to": to, "text": "psst"}
        return wire.encode(frame)

    daemon.send(client, pm(1, "bob", "alice"), pm(2, "alice", "bob"))
    shown = [e for e in daemon.events if isinstance(e, PrivateMessage)]
    assert [(m.id, m.sender, m.recipient) for m in shown] == [(2, "alice", "bob")]
    daemon.send(client, wire.Ok(re=daemon.seq_of(wire.Logout)))
    assert leaving.done and leaving.error is None


def test_a_history_page_answered_after_the_logout_left_has_its_private_messages() -> None:
    daemon, client = HostileDaemon.with_client()
    page = client.history(5)
    leaving = client.logout()  # sent together: the page is answered after the logout left
    daemon.answer(client, leaving, wire.Logout)
    asked = daemon.seq_of(wire.HistoryRequest)
    whisper = {"t": "pm", "id": 3, "ts": TS, "from": "bob", "to": "alice", "text": "psst"}
    # The daemon answers the page before it takes the logout: in the datagram that
    # acknowledges the logout, which ends the session.
    page_answer = wire.encode({**whisper, "re": asked, "history": True})
    daemon.send(client, page_answer, wire.Ok(re=asked, count=1))
    assert page.done and [(m.id, m.sender) for m in page.result] == [(3, "bob")]
    assert leaving.done and leaving.error is None


def test_a_logout_whose_answer_comes_out_of_order_completes_at_once() -> None:
    """Alice logs out while much of the room's talk to her is unacknowledged: the
    daemon's last words are every such frame, the logout's `ok` last. One of the first of
    them is lost, and only the last few are kept to be sent again, so the `ok` can never
    be taken in order. The daemon's acknowledgement of the logout, which every one of
    those datagrams carries, ends it: not a timeout later."""
    h = EngineDriver(ServerConfig(message_burst=1000, message_rate=1000.0), now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    alice = Peer(h, "alice", address=ALICE)
    bob = Peer(h, "bob", address=BOB)
    for n in range(40):
        bob.send(wire.Say(text=f"talk {n} " + "x" * 300, cid=f"t{n}"))
    h.inbox.pop(ALICE, None)  # none of it reached alice: all unacknowledged
    logout = alice.connection.logout()
    farewell: list[bytes] = []
    for data in alice.connection.datagrams_to_send(h.now):
        farewell += h.receive(data, ALICE)
    farewell += h.inbox.pop(ALICE, [])
    assert len(farewell) > 5
    alice.take(farewell[1:])  # the first is lost
    for _ in range(20):
        if logout.done:
            break
        h.now += 0.2
        alice.connection.handle_timer(h.now)
        for data in alice.connection.datagrams_to_send(h.now):
            alice.take(h.receive(data, ALICE))
    assert logout.done and logout.error is None
    assert alice.connection.closed


def test_a_resume_does_not_bring_back_what_the_login_before_it_left_out() -> None:
    """Alice writes in the room and to bob, and leaves. She logs in again on a new
    client: its history is the room's latest messages, and none of her private ones
    (delivered before: nothing waits for her). Its session is then lost and resumes: the
    resume brings what came after that login, not her whisper of before it, which this
    client would show as if it had just come."""
    h = EngineDriver(now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    before = Peer(h, "alice", address=("127.0.0.1", 40003))
    before.send(wire.Say(text="public hello", cid="a1"))
    before.send(wire.Whisper(to="bob", text="secret from before", cid="a2"))
    before.send(wire.Logout())

    again = Peer(h, "alice", address=ALICE, config=RESUMING)
    again.settle()
    assert shown(again.events) == ["public hello"]
    (ready,) = again.of_type(wire.Ready)
    assert ready.upto == 2  # both stored: the whisper was left out on purpose
    again.connection.connection_refused(h.now)  # lost before anything newer came
    again.flush()
    again.settle()
    assert any(isinstance(e, Reconnected) for e in again.events)
    bob = Peer(h, "bob", address=BOB)
    bob.send(wire.Say(text="after the resume", cid="b1"))
    again.settle()
    assert shown(again.events) == ["public hello", "after the resume"]


@pytest.mark.parametrize("logout_lost", [False, True])
def test_a_private_message_that_comes_as_its_recipient_leaves_is_shown_once(
    logout_lost: bool,
) -> None:
    """Bob whispers to alice as she logs out: the whisper reaches her client after her
    logout left it (and, in the second case, after that datagram was lost, so that her
    logout goes again later). The daemon counts it as delivered only if the datagram it
    takes the logout from acknowledges it; her client shows it only if so. Either way
    she is shown it once: now, or at her next login, as waiting."""
    h = EngineDriver(now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    alice = Peer(h, "alice", address=ALICE)
    bob = Peer(h, "bob", address=BOB)
    alice.settle()
    bob.send(wire.Whisper(to="alice", text="as you leave", cid="b1"))
    in_flight = h.inbox.pop(ALICE)  # on its way to alice as she leaves
    leaving = alice.connection.logout()
    if logout_lost:
        assert alice.connection.datagrams_to_send(h.now)  # the logout, lost on the way
        alice.take(in_flight)  # the whisper arrives; the logout goes again, later
    else:
        alice.flush()  # the logout reaches the daemon first: the session ends
        alice.take(in_flight)
    alice.settle()
    assert leaving.done and alice.connection.closed
    first = shown(alice.events)
    again = Peer(h, "alice", address=("127.0.0.1", 40005))
    again.settle()
    assert first + shown(again.events) == ["as you leave"]


def test_a_login_after_a_failed_commit_still_sees_the_message_given_its_id_again() -> None:
    """The disk refuses bob's second message, and carol logs in then: her `ready` must not
    count its id among those stored. The daemon restarts, its clock set back (before the
    ids it gave), so its next id follows the newest one stored, and that id goes to bob's
    next message: carol, resuming, is shown it."""
    sim = Simulation(7, Conditions(delay=0.002), config=ServerConfig(message_burst=10_000))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    first = bob.say("one")
    sim.run_until(lambda: first.done)
    sim.driver.auto_commit = False
    refused = bob.say("refused by the disk")
    sim.run_until(lambda: bool(sim.driver.uncommitted))
    (message,) = [op for op in sim.driver.uncommitted if isinstance(op, Message)]
    sim.driver.uncommitted.clear()
    sim.driver.engine.failed(message)
    sim.driver.auto_commit = True
    sim.run_until(lambda: refused.done)
    assert refused.error is not None

    frames: list[wire.ServerFrame] = []
    carol = sim.client("carol")
    carol.trace = frames.append
    sim.run_until(lambda: carol.ready)
    (ready,) = [frame for frame in frames if isinstance(frame, wire.Ready)]
    assert ready.upto == first.result.id  # not the refused message's

    sim.restart_daemon(down_for=0.5, clock_set_back=WALL + 3600)  # to 1970
    after = bob.say("after the restart")
    sim.run_until(lambda: after.done, 60.0)
    assert after.result.id == message.id  # the id handed out again
    sim.run_until(lambda: any(isinstance(e, Reconnected) for e in sim.events["carol"]), 120.0)
    sim.run(2.0)
    assert shown(sim.events["carol"]) == ["one", "after the restart"]


def test_a_first_login_whose_history_was_cut_does_not_bring_back_old_whispers() -> None:
    """Alice whispered to bob in an earlier run. Her new client's first login is lost
    while its history arrives, before its `ready` (and `upto`): it logs in again asking
    for the history a first login gets, not for everything after the part that came,
    which would have brought her earlier whisper back as if new."""
    h = EngineDriver(ServerConfig(message_burst=1000), now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    bob = Peer(h, "bob", address=BOB)
    long = "x" * 480  # two messages a datagram: the history takes several
    for n in range(5):
        bob.send(wire.Say(text=f"early {n} {long}", cid=f"b{n}"))
    before = Peer(h, "alice", address=("127.0.0.1", 40003))
    before.send(wire.Whisper(to="bob", text="secret from before", cid="a1"))
    bob.settle()  # delivered to bob
    before.send(wire.Logout())
    for n in range(5, 10):
        bob.send(wire.Say(text=f"late {n} {long}", cid=f"b{n}"))

    again = Peer(h, "alice", address=ALICE, config=RESUMING, login=False)
    again.connection.start(h.now)
    log_in_until_history_starts(h, again)  # the rest of it, and its ready, are lost
    assert not any(isinstance(f, wire.Ready) for f in again.frames)
    again.connection.connection_refused(h.now)  # lost before the ready came
    again.flush()
    again.settle()
    texts = [text.split(" x")[0] for text in shown(again.events)]
    assert texts == [f"early {n}" for n in range(5)] + [f"late {n}" for n in range(5, 10)]


def log_in_until_history_starts(h: EngineDriver, peer: Peer) -> None:
    """Exchange a login's datagrams until the first message of its history is taken in;
    what the daemon sent after that datagram is dropped."""
    connection = peer.connection
    for _round in range(10):
        replies = [
            r for data in connection.datagrams_to_send(h.now) for r in h.receive(data, peer.address)
        ]
        for data in replies + h.inbox.pop(peer.address, []):
            connection.receive_datagram(data, h.now)
            if any(isinstance(f, wire.Msg) and f.history for f in peer.frames):
                return
    raise AssertionError("no history came")


def test_a_history_cut_off_by_leaving_before_its_ready_is_still_shown() -> None:
    """Alice leaves while her login's history arrives: what came of it is acknowledged by
    her goodbye, so the private message waiting for her counts as delivered; her client
    shows what came rather than dropping it, and her next login does not have it."""
    h = EngineDriver(ServerConfig(message_burst=1000), now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    bob = Peer(h, "bob", address=BOB)
    bob.send(wire.Whisper(to="alice", text="waiting for you", cid="b0"))
    long = "x" * 480
    for n in range(5):
        bob.send(wire.Say(text=f"said {n} {long}", cid=f"b{n + 1}"))
    alice = Peer(h, "alice", address=ALICE, login=False)
    alice.connection.start(h.now)
    log_in_until_history_starts(h, alice)
    alice.connection.close()  # leaves at once, before the ready
    alice.flush()
    alice.take([])
    (history,) = [e for e in alice.events if isinstance(e, History)]
    assert history.more and "waiting for you" in [m.text for m in history.messages]
    again = Peer(h, "alice", address=("127.0.0.1", 40005))
    assert "waiting for you" not in shown(again.events)


@pytest.mark.parametrize("when", ["back", "coming back"])
def test_a_logout_right_after_coming_back_waits_for_the_history_it_acknowledges(
    when: str,
) -> None:
    """Alice is shown bob's whispers, and her session is lost before her acknowledgement
    left: the daemon still has them waiting, and her resume's history brings them again
    (her client knows them, and does not show them twice), in several datagrams. She
    logs out as soon as she is back (or while she is coming back), before that history
    has all come: her logout waits for it, so that it acknowledges every whisper, and
    her next login shows none again."""
    h = EngineDriver(ServerConfig(message_burst=1000), now=100.0)
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    alice = Peer(h, "alice", address=ALICE, config=RESUMING)
    bob = Peer(h, "bob", address=BOB)
    alice.settle()
    alice.events.clear()
    long = "x" * 480  # two a datagram: the resume's history takes several
    texts = [f"whisper {n} {long}" for n in range(5)]
    for n, text in enumerate(texts):
        bob.send(wire.Whisper(to="alice", text=text, cid=f"w{n}"))
    alice.take(h.inbox.pop(ALICE))  # shown; her acknowledgement never leaves
    assert shown(alice.events) == texts
    connection = alice.connection
    connection.connection_refused(h.now)  # lost before the acknowledgement left
    leaving = connection.logout() if when == "coming back" else None
    for _round in range(10):
        replies = [
            r for data in connection.datagrams_to_send(h.now) for r in h.receive(data, ALICE)
        ]
        for data in replies + h.inbox.pop(ALICE, []):
            connection.receive_datagram(data, h.now)
            if connection.connected and leaving is None:
                leaving = connection.logout()  # back: leave at once
        if leaving is not None and leaving.done:
            break
    assert leaving is not None and leaving.done and connection.closed
    alice.take([])
    again = Peer(h, "alice", address=("127.0.0.1", 40005))
    assert shown(alice.events) == texts
    assert not [text for text in shown(again.events) if text in texts]


def whisper_then_restart(seed: int) -> tuple[Simulation, ClientConnection]:
    """Alice is shown bob's whisper, and the daemon restarts before her acknowledgement
    left (it waits up to 25 ms)."""
    sim = Simulation(seed, Conditions(delay=0.002))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    bob.whisper("alice", "shown once")
    sim.run_until(lambda: "shown once" in shown(sim.events["alice"]))
    sim.restart_daemon(down_for=0.0)
    return sim, alice


def assert_left_then_shown_once(sim: Simulation, alice: ClientConnection, leaving: Handle) -> None:
    """Alice's logout ends cleanly without telling of a reconnection, and her next login
    does not show the whisper a second time."""
    sim.run_until(lambda: leaving.done, 30.0)
    assert alice.closed and leaving.error is None
    assert not any(isinstance(e, Reconnected) for e in sim.events["alice"])
    again = sim.client("alice-again", "alice")
    sim.run_until(lambda: again.ready)
    sim.run(1.0)
    assert shown(sim.events["alice"]) == ["shown once"]
    assert "shown once" not in shown(sim.events["alice-again"])


def test_a_logout_that_meets_a_restarted_daemon_comes_back_to_acknowledge_first() -> None:
    """Alice, just shown a whisper, logs out at once, not knowing the daemon restarted.
    Her logout meets the new daemon, which has no such session: her client comes back
    (the history brings the whisper again, known, not shown twice) and logs out from
    there."""
    sim, alice = whisper_then_restart(3)
    assert_left_then_shown_once(sim, alice, alice.logout())


def test_a_logout_while_coming_back_after_a_restart_comes_back_before_it_leaves() -> None:
    """Alice, just shown a whisper, has heard of the restart (a `RESET`) and her client
    is opening a new channel when she logs out. The logout waits for the session to come
    back, with its history, and acknowledges it from there."""
    sim, alice = whisper_then_restart(4)
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]))
    assert alice.link is None and not alice.closed  # a handshake under way
    leaving = alice.logout()
    assert not leaving.done
    assert_left_then_shown_once(sim, alice, leaving)


def test_a_logout_after_the_new_channel_opens_but_before_the_welcome_waits_too() -> None:
    """As above, one round trip later: the new channel is open and the resume on its way
    when she logs out. The logout still waits for the resumed history."""
    sim, alice = whisper_then_restart(4)
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]))
    sim.run_until(lambda: alice.link is not None and not alice.connected)
    leaving = alice.logout()
    assert not leaving.done
    assert_left_then_shown_once(sim, alice, leaving)


def test_a_logout_while_coming_back_to_a_daemon_that_is_down_ends_at_once() -> None:
    """The daemon stopped and is not back: a logout made while the client tries to open
    a channel again ends as soon as the daemon's port is found closed, not when the
    handshake's 5 s run out."""
    sim = Simulation(5, Conditions(delay=0.002))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    sim.stop_daemon()
    alice.probe()
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]), 1.0)
    leaving = alice.logout()
    sim.run_until(lambda: leaving.done, 1.5)
    assert alice.closed and leaving.error is None


def test_a_message_stored_after_its_first_copy_was_refused_is_shown_to_its_sender() -> None:
    """A whisper in flight when an earlier message is refused as too fast goes again with
    it. Its first copy is refused (the account muted then), and the request fails so; its
    second copy is stored (unmuted meanwhile): everyone else sees it, and so does its
    sender, once, rather than its number waited on for good and the message never shown."""
    daemon, client = HostileDaemon.with_client()
    client.say("m1")
    whisper = client.whisper("bob", "w1")
    _a, b, c, d = resent_after_a_refusal(daemon, client)
    daemon.send(client, wire.ErrorFrame(code="muted", message="You are muted.", re=b))
    assert whisper.done and whisper.error is not None
    daemon.send(client, wire.Ok(re=c, id=1, ts=TS), wire.Ok(re=d, id=2, ts=TS, to="bob"))
    for _copy in range(2):  # shown at its answer; the daemon's copy too is no news
        shown = [event for event in daemon.events if isinstance(event, PrivateMessage)]
        assert [(event.id, event.recipient, event.text) for event in shown] == [(2, "bob", "w1")]
        daemon.send(client, wire.Pm(id=2, ts=TS, sender="alice", to="bob", text="w1", cid="x"))
    assert client.pending == 0 and d not in client._outstanding.numbers()


def test_a_frame_sent_as_is_and_stored_after_its_first_copy_was_refused_shows_its_copy() -> None:
    """As above, for a whisper sent as a frame (`request`): its text is not known to the
    client, so its `ok` shows nothing (a message with no text); the daemon's copy shows it."""
    daemon, client = HostileDaemon.with_client()
    client.say("m1")
    whisper = client.request(wire.Whisper(to="bob", text="w1", cid="x"))
    _a, b, c, d = resent_after_a_refusal(daemon, client)
    daemon.send(client, wire.ErrorFrame(code="muted", message="You are muted.", re=b))
    assert whisper.done and whisper.error is not None
    daemon.send(client, wire.Ok(re=c, id=1, ts=TS), wire.Ok(re=d, id=2, ts=TS, to="bob"))
    assert not [event for event in daemon.events if isinstance(event, PrivateMessage)]
    daemon.send(client, wire.Pm(id=2, ts=TS, sender="alice", to="bob", text="w1", cid="x"))
    shown = [event for event in daemon.events if isinstance(event, PrivateMessage)]
    assert [(event.id, event.recipient, event.text) for event in shown] == [(2, "bob", "w1")]
    assert client.pending == 0 and d not in client._outstanding.numbers()
