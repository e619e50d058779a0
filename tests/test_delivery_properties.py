"""Exactly once, in each sender's order, whatever happens meanwhile: the real client core
and the real engine over seeded network weather, in explicit time, with daemon restarts,
clients cut off (and coming back with their tickets) and clients moving address."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.engine import ServerConfig
from trio_chat.events import Event, PrivateMessage
from trio_chat.testing.netsim import Conditions
from trio_chat.testing.simulation import Simulation, shown_messages

PEOPLE = ("alice", "bob", "carol")

weather = st.builds(
    Conditions,
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    duplicate=st.sampled_from([0.0, 0.1, 0.3]),
    reorder=st.sampled_from([0.0, 0.2, 0.5]),
    delay=st.sampled_from([0.002, 0.01, 0.03]),
    jitter=st.sampled_from([0.001, 0.01]),
)
who = st.sampled_from(PEOPLE)
action = st.one_of(
    st.tuples(st.just("say"), who, st.integers(1, 6)),
    st.tuples(st.just("whisper"), who, who),
    st.tuples(st.just("run"), st.sampled_from([0.001, 0.01, 0.05, 0.3, 2.0])),
    st.tuples(st.just("restart"), st.sampled_from([0.0, 0.5, 3.0])),
    st.tuples(st.just("cut"), who, st.sampled_from([0.5, 4.0, 12.0])),
    st.tuples(st.just("move"), who),
)

SIMULATED = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
"""How the simulated examples run: seconds of simulated time take milliseconds, unevenly."""


def shown(events: list[Event]) -> list[tuple[str, str]]:
    """(sender, text) of every message shown, live or in a history, in order."""
    return [(message.sender, message.text) for message in shown_messages(events)]


def move(sim: Simulation, label: str, moves: int) -> None:
    """The client's NAT gives it a new address: the old one no longer reaches it."""
    old = sim._addresses[label]
    new = (f"10.8.{moves % 250}.{PEOPLE.index(label) + 1}", 5000 + moves)
    sim._addresses[label] = new
    del sim._labels[old]
    sim._labels[new] = label


def everyone_in(sim: Simulation, clients: dict[str, ClientConnection], sky: Conditions) -> None:
    """Wait until every client is in the room, each pinging at its own place in the
    keepalive spread (drawn at random otherwise); then the weather turns (a first
    connection may fail outright)."""
    for n, client in enumerate(clients.values()):
        client.keepalive_lead = n / len(clients)
    sim.run_until(lambda: all(c.ready for c in clients.values()), 10.0)
    for label in sim.network.conditions:
        sim.network.conditions[label] = sky


class Actions:
    """What the actions both property tests share do: messages said and whispered (their
    handles kept, texts numbered), time passing, the daemon restarting."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.handles: list[tuple[str, str | None, Handle]] = []
        self.counter = 0

    def do(self, step: tuple[Any, ...], clients: dict[str, ClientConnection]) -> bool:
        """Do `step` if it is one of these; whether it was."""
        kind = step[0]
        if kind == "say":
            for _ in range(step[2]):
                self.counter += 1
                self.handles.append((step[1], None, clients[step[1]].say(f"m{self.counter}")))
        elif kind == "whisper":
            self.counter += 1
            handle = clients[step[1]].whisper(step[2], f"m{self.counter}")
            self.handles.append((step[1], step[2], handle))
        elif kind == "run":
            self.sim.run(step[1])
        elif kind == "restart":
            self.sim.restart_daemon(down_for=step[1])
        else:
            return False
        return True


@settings(SIMULATED, max_examples=100)
@given(
    seed=st.integers(0, 2**16),
    sky=weather,
    burst=st.sampled_from([2, 10_000]),
    actions=st.lists(action, min_size=3, max_size=14),
    read_delay=st.sampled_from([0.0, 0.01, 0.5, 3.0]),
)
def test_every_message_is_shown_once_in_its_senders_order(
    seed: int, sky: Conditions, burst: int, actions: list[tuple[Any, ...]], read_delay: float
) -> None:
    sim = Simulation(
        seed,
        Conditions(),
        config=ServerConfig(message_burst=burst),  # 2: refused as too fast, and resent
        client_config=ClientConfig(reconnect_delay_max=1.0),
        read_delay=read_delay,  # logins meet whispers, logouts and restarts
    )
    clients = {name: sim.client(name) for name in PEOPLE}
    everyone_in(sim, clients, sky)
    act = Actions(sim)
    handles = act.handles
    moves = 0
    for step in actions:
        kind = step[0]
        if act.do(step, clients):
            continue
        if kind == "cut":
            label, seconds = step[1], step[2]
            sim.network.conditions[label] = Conditions(loss=1.0)
            sim.run(seconds)
            sim.network.conditions[label] = sky
        else:
            moves += 1
            move(sim, step[1], moves)
    sim.run_until(lambda: all(h.done for _s, _t, h in handles), 600.0)
    # A client that moved, silent, learns it at its next keepalive (15 s): give it time
    # to be given up, to come back, and to be shown what it missed.
    sim.run(120.0)
    sim.run_until(lambda: all(c.connected for c in clients.values()), 120.0)
    sim.run(5.0)
    for _sender, _to, handle in handles:
        assert handle.error is None, handle.error
    stored = [m.text for m in sim.driver.stored_messages()]
    assert len(stored) == len(set(stored)) == len(handles)
    for name, client in clients.items():
        assert not client.closed, client.failure
        seen = [pair for pair in shown(sim.events[name])]
        assert len(seen) == len(set(seen)), (name, seen)
        for sender in PEOPLE:
            expected = [
                handle.text
                for s, to, handle in handles
                if s == sender and sender != name and (to is None or to == name)
            ]
            got = [text for s, text in seen if s == sender]
            assert got == expected, (name, sender)


def test_a_stalled_daemon_keeps_a_fast_senders_messages_in_order() -> None:
    # A daemon stopped for 15 s (SIGSTOP, a swapped-out or starved process) while a client
    # sent faster than its rate: the messages the client had written after one refused as
    # too fast, read once the daemon ran again, were taken as coming after that one was
    # given up (10 s past its retry time had passed on the clock), and stored before it.
    sim = Simulation(1, config=ServerConfig(message_burst=20, message_rate=100.0))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready, 10.0)
    handles = [alice.say(f"m{n:03d}") for n in range(250)]
    sim.run(1.0)
    assert 0 < len(sim.driver.stored_messages()) < 250
    sim.stall_daemon(15.0)
    sim.run_until(lambda: all(handle.done for handle in handles), 600.0)
    assert all(handle.error is None for handle in handles)
    stored = [m.text for m in sim.driver.stored_messages()]
    assert stored == [f"m{n:03d}" for n in range(250)]


def test_a_restart_while_a_login_reads_its_mailbox_loses_nothing() -> None:
    """Bob's client comes back after a restart while his unread whisper waits on disk:
    alice's message and his own are stored while his mailbox is read, and the daemon
    restarts again before the read is done. Back once more, he is shown alice's message
    (his client resumes from before it: his own was not answered before his history)."""
    sky = Conditions(delay=0.002, jitter=0.001)
    sim = Simulation(0, client_config=ClientConfig(reconnect_delay_max=1.0), read_delay=0.5)
    clients = {name: sim.client(name) for name in PEOPLE}
    everyone_in(sim, clients, sky)
    alice, bob = clients["alice"], clients["bob"]
    handles = [alice.say("before"), bob.say("his own"), alice.whisper("bob", "waiting")]
    sim.restart_daemon()
    sim.network.conditions["bob"] = Conditions(loss=1.0)
    sim.run(0.5)
    sim.network.conditions["bob"] = sky
    sim.run(0.3)  # his login waits for its read; the others' messages are stored
    assert len(sim.driver.stored_messages()) == 3
    sim.restart_daemon()
    sim.run_until(lambda: all(h.done for h in handles), 60.0)
    sim.run(120.0)
    sim.run_until(lambda: bob.connected and bob.ready, 120.0)
    assert shown(sim.events["bob"]) == [("alice", "before"), ("alice", "waiting")]


relog_action = st.one_of(
    st.tuples(st.just("say"), who, st.integers(1, 4)),
    st.tuples(st.just("whisper"), who, who),
    st.tuples(st.just("run"), st.sampled_from([0.001, 0.01, 0.05, 0.3, 2.0])),
    st.tuples(st.just("restart"), st.sampled_from([0.0, 0.5])),
    st.tuples(st.just("cut"), who, st.sampled_from([0.5, 4.0])),
    st.tuples(st.just("again"), who),
)


@settings(SIMULATED, max_examples=60)
@given(
    seed=st.integers(0, 2**16),
    sky=weather,
    actions=st.lists(relog_action, min_size=3, max_size=14),
    read_delay=st.sampled_from([0.0, 0.01, 0.5, 3.0]),
)
def test_each_private_message_is_shown_once_over_a_persons_successive_clients(
    seed: int, sky: Conditions, actions: list[tuple[Any, ...]], read_delay: float
) -> None:
    """People log out and come back on a new client, a new program, while others whisper
    to them, the network is poor and the daemon restarts: every private message to a
    person is shown once over all the clients they used, and no client shows a private
    message its person sent before it logged in. (A client that closes at once, its
    goodbye unanswered, may leave what it showed last unacknowledged if that goodbye is
    lost: shown again at the next login, as the README says of leaving in a hurry.)"""
    sim = Simulation(
        seed,
        Conditions(),
        client_config=ClientConfig(reconnect_delay_max=1.0),
        read_delay=read_delay,
    )
    runs = dict.fromkeys(PEOPLE, 0)
    current = {name: sim.client(f"{name}#0", name) for name in PEOPLE}
    everyone_in(sim, current, sky)
    act = Actions(sim)
    handles = act.handles
    whispered_before: dict[str, list[str]] = {}
    """Per client label: the texts its person had whispered before it logged in."""
    for step in actions:
        kind = step[0]
        if act.do(step, current):
            continue
        if kind == "cut":
            label = f"{step[1]}#{runs[step[1]]}"
            sim.network.conditions[label] = Conditions(loss=1.0)
            sim.run(step[2])
            sim.network.conditions[label] = sky
        else:
            name = step[1]
            current[name] = come_back(sim, current[name], name, runs)
            label = f"{name}#{runs[name]}"
            whispered_before[label] = [
                h.text for s, to, h in handles if s == name and to is not None and h.done
            ]
            sim.network.conditions[label] = sky
    sim.run_until(lambda: all(h.done for _s, _t, h in handles), 600.0)
    sim.run(120.0)
    sim.run_until(lambda: all(c.connected and c.ready for c in current.values()), 120.0)
    sim.run(5.0)
    for _sender, _to, handle in handles:
        assert handle.error is None, handle.error
    for name in PEOPLE:
        labels = [f"{name}#{n}" for n in range(runs[name] + 1)]
        private = [
            (m.sender, m.text)
            for label in labels
            for m in shown_messages(sim.events[label])
            if isinstance(m, PrivateMessage) and m.sender != name
        ]
        expected = [(s, h.text) for s, to, h in handles if to == name and s != name]
        assert sorted(private) == sorted(expected), name
        for label in labels[1:]:
            own = [
                m.text
                for m in shown_messages(sim.events[label])
                if isinstance(m, PrivateMessage) and m.sender == name
            ]
            assert not set(own) & set(whispered_before[label]), label


def come_back(
    sim: Simulation, leaving: ClientConnection, name: str, runs: dict[str, int]
) -> ClientConnection:
    """`name` logs out once what it sent is answered (as `ChatClient` does), and comes
    back on a new client that logs in (a first connection may fail outright: the
    network is clear until it is in).

    It may leave while coming back after a daemon restart: its logout then waits for the
    session and its history, so that private messages shown just before the restart,
    never acknowledged to the old daemon, are acknowledged before it goes."""
    sim.run_until(lambda: leaving.pending == 0, 600.0)
    done = leaving.logout()
    sim.run_until(lambda: done.done, 600.0)
    runs[name] += 1
    client = sim.client(f"{name}#{runs[name]}", name)
    client.keepalive_lead = leaving.keepalive_lead
    sim.run_until(lambda: client.ready, 60.0)
    return client
