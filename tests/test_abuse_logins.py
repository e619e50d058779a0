"""Password guessing against the engine, as an attacker would run it, in explicit time.

Password work is held (`auto_hash=False`) and done a piece at a time, as the daemon's
hashing threads do it, so that what is queued, and in what order it is served, shows.
"""

from __future__ import annotations

from typing import Any

from trio_chat import wire
from trio_chat.engine import Address, CheckPassword, ServerConfig
from trio_chat.errors import Throttled, TooManySessions, WrongPassword
from trio_chat.testing.driver import EngineDriver, Peer

ATTACKER = "10.6.0.1"
OWNER = ("10.9.9.9", 5000)
PROBER = ("10.7.0.1", 1)


def driver(*, alice: bool = True, **limits: Any) -> EngineDriver:
    """An engine holding its password work; with the account `alice` unless told not to.
    Handshakes are not limited here: what is tested is what a login costs once in."""
    config = ServerConfig(
        max_sessions_per_address=100, handshake_rate=1000.0, handshake_burst=1000, **limits
    )
    h = EngineDriver(config)
    if alice:
        h.add_account("alice", "alice-password")
    h.auto_hash = False
    h.hashes_done = 0
    return h


def attempt(h: EngineDriver, address: Address, name: str, password: str) -> Peer:
    """A login on a channel of its own; the client core answers `busy` by itself."""
    return Peer(h, name, password, address)


def run(h: EngineDriver, peers: list[Peer], seconds: float, step: float = 0.05) -> None:
    """Let time pass: the hashing threads do one check per `step`, clients act on timers."""
    end = h.now + seconds
    while h.now < end:
        h.finish_hashing(1)
        h.advance(step)
        for peer in peers:
            peer.connection.handle_timer(h.now)
            peer.flush()


def hammer(h: EngineDriver, ip: str, names: list[str], seconds: float) -> list[Peer]:
    """Keep 16 login attempts open from `ip` for `seconds`, a new guess for each one that
    is refused, while the hashing threads do one check every 50 ms."""
    attempts: list[Peer] = []
    open_now: list[Peer] = []
    end = h.now + seconds
    while h.now < end:
        open_now = [peer for peer in open_now if not peer.connection.closed]
        while len(open_now) < 16:
            n = len(attempts)
            peer = attempt(h, (ip, 1000 + n), names[n % len(names)], f"guess number {n}")
            attempts.append(peer)
            open_now.append(peer)
        run(h, open_now, 0.05)
    return attempts


def test_guesses_sent_at_once_get_no_more_checks_than_guesses_sent_one_by_one() -> None:
    h = driver(login_free_failures=3, login_delay=1.0)
    guesses = [attempt(h, (ATTACKER, 1000 + n), "alice", f"guess number {n}") for n in range(64)]
    # Two checks queued for the address; the other 62 were answered `busy` at once.
    assert len(h.hashing) == 2
    assert h.engine.stats["busy_refused"] == 62
    guesses += hammer(h, ATTACKER, ["alice"], 10.0)
    # Three free failures, then a delay of 1, 2 and 4 s after each next one: six checks
    # in 10 s, however many guesses were sent.
    assert h.hashes_done == 6
    assert len(guesses) > 200
    assert not any(peer.connection.connected for peer in guesses)


def test_an_address_never_has_more_checks_under_way_than_its_allowance() -> None:
    """Two checks per address, queued or running: one done frees one place, not two."""
    h = driver(login_free_failures=1000, checks_per_address=2, hash_slots=8)
    for port in (1, 2):
        attempt(h, (ATTACKER, port), "alice", "wrong password")
    assert len(h.hashing) == 2
    h.finish_hashing(1)
    for port in (3, 4):
        attempt(h, (ATTACKER, port), "alice", "wrong password")
    assert len(h.hashing) == 2
    assert h.engine.stats["busy_refused"] == 1


def test_names_without_an_account_cost_a_check_under_the_same_allowance() -> None:
    h = driver(login_free_failures=3, login_delay=1.0)
    probe = attempt(h, (ATTACKER, 999), "nobody", "some password")
    (work,) = h.hashing
    assert isinstance(work, CheckPassword) and work.password_hash == ""  # checked all the same
    names = [f"who{n}" for n in range(1000)]
    probes = [probe, *hammer(h, ATTACKER, names, 10.0)]
    for peer in probes:
        peer.poll()
    assert h.hashes_done == 6
    answered = [p.connection.failure for p in probes if p.connection.failure is not None]
    assert sum(error.code == "unknown_user" for error in answered) == 6
    assert sum(isinstance(error, Throttled) for error in answered) > 100


def test_a_flood_from_twenty_addresses_leaves_another_login_served_within_one_round() -> None:
    h = driver(login_free_failures=1000)  # a flood of right and wrong passwords alike
    flood = [
        attempt(h, (f"10.7.0.{a}", 3000 + n), "alice", "wrong password")
        for n in range(100)
        for a in range(20)
    ]
    assert h.engine.lobby.queued_checks <= 2 * 20
    h.finish_hashing(1)
    owner = attempt(h, OWNER, "alice", "alice-password")
    checks_before = h.hashes_done
    while not owner.connection.connected:
        run(h, [owner, *flood[:200]], 0.05)
        # The two checks running, one from each of the 20 addresses, then its own.
        assert h.hashes_done - checks_before <= 2 + 20 + 1, "the owner waited more than a round"
    assert owner.connection.connected


def test_checks_waiting_are_taken_an_address_at_a_time_and_none_is_dropped() -> None:
    """One hashing thread: the attacker's two checks, queued together, are taken one a
    round, the owner's between them; every check queued is done."""
    h = driver(login_free_failures=1000, hash_slots=1)
    attempt(h, PROBER, "alice", "the first one in")
    for port in (1, 2):
        attempt(h, (ATTACKER, port), "alice", f"guess number {port}")
    attempt(h, OWNER, "alice", "alice-password")
    order = []
    while h.hashing:
        (work,) = h.hashing
        assert isinstance(work, CheckPassword)
        order.append(work.password)
        h.finish_hashing(1)
    assert order == ["the first one in", "guess number 1", "alice-password", "guess number 2"]
    assert h.engine.lobby.queued_checks == 0


def test_past_the_queue_limit_a_login_is_answered_busy_at_once() -> None:
    h = driver(hash_queue_limit=10, login_free_failures=1000)
    [attempt(h, (f"10.8.0.{a}", 1), "alice", "wrong password") for a in range(30)]
    assert h.engine.lobby.queued_checks == 10
    assert len(h.hashing) == 2  # handed to the hashing threads
    late = attempt(h, OWNER, "alice", "alice-password")
    assert not late.connection.connected and not late.connection.closed
    busy = [f for f in late.frames if isinstance(f, wire.ErrorFrame) and f.code == "busy"]
    assert busy and busy[0].retry_after is not None
    # The client sends it again by itself once the queue has room.
    run(h, [late], 20.0)
    assert late.connection.connected


def test_a_check_under_way_counts_as_a_failure_until_it_is_judged() -> None:
    """Two failures of three free ones: two guesses sent at once get one check, not two,
    as one by one they would (the first may be the third failure)."""
    h = driver(login_free_failures=3, login_delay=1.0)
    h.auto_hash = True
    for port in (1, 2):
        assert attempt(h, (ATTACKER, port), "alice", "wrong guess").connection.failure
    h.auto_hash = False
    at_once = [attempt(h, (ATTACKER, port), "alice", "wrong guess") for port in (3, 4)]
    assert len(h.hashing) == 1
    refused = [f for f in at_once[1].frames if isinstance(f, wire.ErrorFrame)]
    assert [f.code for f in refused] == ["throttled"]


def told_to_wait(peer: Peer) -> float | None:
    """The `retry_after` of the `throttled` answer a login was refused with (None: none)."""
    for frame in peer.frames:
        if isinstance(frame, wire.ErrorFrame) and frame.code == "throttled":
            return frame.retry_after
    return None


def test_guesses_sent_while_one_is_checked_are_told_the_delay_its_failure_brings() -> None:
    """protocol.md 7.1: a check in progress counts as a failure until it is known not to be
    one, and each delay runs from the latest failure it counts. Three failures, the
    first delay (1 s) waited out, then three guesses at once: one is checked, and the
    others are told the delay of four failures, 2 s, as it stands while the check runs
    (it has not failed yet); once it has, 2 s from then, to the millisecond."""
    h = driver(login_free_failures=3, login_delay=1.0)
    h.auto_hash = True
    for port in (1, 2, 3):
        assert attempt(h, (ATTACKER, port), "alice", "wrong guess").connection.failure
    h.now += 1.0
    h.auto_hash = False
    at_once = [attempt(h, (ATTACKER, port), "alice", f"guess number {port}") for port in (4, 5, 6)]
    assert len(h.hashing) == 1
    assert [told_to_wait(peer) for peer in at_once] == [None, 2.0, 2.0]
    h.now += 0.25  # the check takes a quarter of a second, and fails
    h.finish_hashing(1)
    at_once[0].poll()
    assert isinstance(at_once[0].connection.failure, WrongPassword)
    assert told_to_wait(attempt(h, (ATTACKER, 7), "alice", "guess number 7")) == 2.0
    h.now += 0.75
    assert told_to_wait(attempt(h, (ATTACKER, 8), "alice", "guess number 8")) == 1.25


def test_an_owners_check_in_progress_does_not_shorten_the_accounts_delay() -> None:
    """An account guessed at from ten addresses holds every address that failed for
    60 s. While its owner's login, from a clean address, is checked, a guesser is told
    the 60 s (the check counts as one more failure), not a moment: the owner's success
    would not clear the account's failures."""
    h = driver(login_free_failures=3, login_delay=1.0)
    h.auto_hash = True
    for n in range(10):
        assert attempt(h, (f"10.6.1.{n}", 1), "alice", "wrong guess").connection.failure
    h.now += 0.5
    h.auto_hash = False
    owner = attempt(h, OWNER, "alice", "alice-password")
    assert len(h.hashing) == 1
    assert told_to_wait(attempt(h, ("10.6.1.0", 2), "alice", "guess number 9")) == 60.0
    h.finish_hashing(1)
    owner.poll()
    assert owner.connection.connected
    assert told_to_wait(attempt(h, ("10.6.1.0", 3), "alice", "guess number 10")) == 59.5


def test_two_addresses_hammering_an_account_never_keep_its_owner_out() -> None:
    h = driver(login_free_failures=3, login_delay=1.0)
    hammering: list[Peer] = []
    owner_waits: list[float] = []
    for second in range(60):
        for n in range(10):  # ten guesses a second from each of two addresses
            for a in (1, 2):
                port = 10_000 + 10 * second + n
                hammering.append(attempt(h, (f"10.5.0.{a}", port), "alice", f"g{port}"))
        if second % 2 == 0:
            began = h.now
            owner = attempt(h, OWNER, "alice", "alice-password")
            while not owner.connection.closed and not owner.connection.connected:
                run(h, [owner], 0.05)
            assert owner.connection.connected, owner.connection.failure
            owner_waits.append(h.now - began)
            owner.connection.close()
            owner.flush()
        run(h, hammering[-20:], 1.0)
    assert len(owner_waits) == 30 and max(owner_waits) < 3.0
    assert not any(peer.connection.connected for peer in hammering)  # no guess got in


def test_a_ticket_lets_its_owner_in_while_their_address_is_throttled() -> None:
    h = driver(login_free_failures=1, login_delay=30.0)
    h.auto_hash = True
    alice = attempt(h, OWNER, "alice", "alice-password")
    ticket = alice.connection.ticket
    assert ticket
    wrong = attempt(h, (OWNER[0], 6001), "alice", "not her password")
    assert wrong.connection.failure is not None
    again = attempt(h, (OWNER[0], 6002), "alice", "alice-password")
    assert isinstance(again.connection.failure, Throttled)
    resumed = Peer(h, "alice", "", (OWNER[0], 6003), login=False)
    resumed.connection.ticket = ticket
    resumed.login()
    assert resumed.connection.connected


def test_a_login_told_to_wait_a_moment_waits_and_goes_in() -> None:
    # The README's API example, run after a mistyped password: the address had used its
    # free failures, so the right password was refused as throttled (retry after 1 s),
    # and the call raised, with a traceback, when the client could wait that second.
    h = driver(login_free_failures=1, login_delay=1.0)
    h.auto_hash = True
    wrong = attempt(h, (OWNER[0], 6001), "alice", "not her password")
    assert wrong.connection.failure is not None
    again = attempt(h, (OWNER[0], 6002), "alice", "alice-password")
    assert not again.connection.closed  # waiting its second, not failed
    run(h, [again], 1.5)
    assert again.connection.connected
    # A long wait is the caller's to decide on: it is told at once.
    h = driver(login_free_failures=1, login_delay=30.0)
    h.auto_hash = True
    attempt(h, (OWNER[0], 6001), "alice", "not her password")
    later = attempt(h, (OWNER[0], 6002), "alice", "alice-password")
    assert isinstance(later.connection.failure, Throttled)


def test_registrations_are_limited_in_all_beside_each_address() -> None:
    h = driver(alice=False, register_rate_total=1.0, register_burst_total=5)
    h.auto_hash = True
    answers = [
        h.request(
            wire.Register(rid=f"r{n}", name=f"user{n}", password="a-password"), (f"10.4.0.{n}", 1)
        )
        for n in range(7)
    ]
    assert [type(a).__name__ for a in answers] == ["Registered"] * 5 + ["ErrorFrame"] * 2
    refused = answers[-1]
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "too_many_registrations"
    assert refused.message == "Too many registrations at the moment; try again later."
    h.now += 1.0
    answer = h.request(
        wire.Register(rid="late", name="late", password="a-password"), ("10.4.1.1", 1)
    )
    assert isinstance(answer, wire.Registered)


def test_a_registration_refused_for_all_addresses_spends_nothing_of_its_own() -> None:
    """Refused because all addresses together have registered enough for now, it did not
    register: its address's allowance (a burst of 2, then one every 10 minutes here) is
    whole when the daemon's comes back, and not `too_many_registrations` "from your
    address" for 9 minutes more."""
    h = driver(
        alice=False,
        register_rate=1 / 600,
        register_burst=2,
        register_rate_total=1 / 60,
        register_burst_total=1,
    )
    h.auto_hash = True

    def attempt_from(address: Address, name: str) -> wire.ServerFrame:
        return h.request(wire.Register(rid=name, name=name, password="a-password"), address)

    assert isinstance(attempt_from(("10.4.0.1", 1), "first"), wire.Registered)
    for name in ("second", "second"):
        refused = attempt_from(("10.4.0.2", 1), name)
        assert isinstance(refused, wire.ErrorFrame) and refused.code == "too_many_registrations"
        assert refused.message == "Too many registrations at the moment; try again later."
    h.now += 60.0
    assert isinstance(attempt_from(("10.4.0.2", 1), "second"), wire.Registered)


def test_busy_is_its_own_error_for_a_registration_the_client_sends_again() -> None:
    h = driver(hash_queue_limit=1)
    [attempt(h, (f"10.3.0.{a}", 1), "alice", "wrong password") for a in range(3)]
    peer = Peer(h, None, address=("10.3.1.1", 1))
    handle = peer.connection.register("newcomer", "a-password")
    peer.flush()
    assert any(isinstance(f, wire.ErrorFrame) and f.code == "busy" for f in peer.frames)
    assert not handle.done
    run(h, [peer], 10.0)
    h.commit_held()
    peer.poll()
    assert handle.done and handle.error is None and handle.result == "newcomer"


def test_a_login_kept_waiting_by_busy_answers_keeps_its_channel_past_the_login_timeout() -> None:
    h = driver(login_timeout=5.0, login_free_failures=1000)
    # Two checks per address are running and are slow: every other login is `busy`.
    [attempt(h, (ATTACKER, 1 + n), "alice", "wrong password") for n in range(2)]
    patient = attempt(h, (ATTACKER, 50), "alice", "alice-password")
    for _ in range(200):  # 10 s of `busy`, answered again every half second
        h.advance(0.05)
        patient.connection.handle_timer(h.now)
        patient.flush()
    assert not patient.connection.closed
    h.finish_hashing()
    run(h, [patient], 2.0)
    assert patient.connection.connected


def test_a_channel_that_never_logs_in_is_told_so_when_it_is_closed() -> None:
    h = driver(login_timeout=5.0)
    idle = Peer(h, None, address=OWNER)
    h.advance(6.0)
    idle.poll()
    (bye,) = idle.of_type(wire.Bye)
    assert (bye.reason, bye.message) == ("login_timeout", "No login came in time; connect again.")
    assert not h.engine.sessions


def test_registrations_tell_whether_a_name_exists_no_faster_than_logins_may_guess() -> None:
    h = driver(alice=False, register_burst=1)
    h.auto_hash = True
    h.add_account("taken", "a-password")

    def ask(name: str, n: int) -> wire.ServerFrame:
        return h.request(wire.Register(rid=f"p{n}", name=name, password="a-password"), PROBER)

    # Three lookups answer at once (taken, taken, and a free name that is registered,
    # which clears the record), then each answer that tells costs a growing wait.
    codes = []
    for n, name in enumerate(["taken", "Taken", "free0", "taken", "free1", "taken", "taken"]):
        answer = ask(name, n)
        codes.append(answer.code if isinstance(answer, wire.ErrorFrame) else "registered")
    assert codes == [
        "name_taken",
        "name_taken",
        "registered",
        "name_taken",
        "too_many_registrations",  # the address's registration spent: free, it says...
        "name_taken",  # ... and counted as a lookup: this is the third since the success
        "too_many_registrations",  # from now on, before the name is looked at
    ]
    last = ask("taken", 99)
    assert isinstance(last, wire.ErrorFrame) and last.code == "too_many_registrations"
    assert last.retry_after is not None and last.retry_after > 0
    assert last.message == "Too many registrations from your address; try again later."
    h.now += 1.0  # the first wait (1 s) is over: one more lookup, then 2 s
    assert getattr(ask("taken", 100), "code", None) == "name_taken"
    assert getattr(ask("taken", 101), "code", None) == "too_many_registrations"
    # Another address is not affected.
    other = h.request(wire.Register(rid="o", name="taken", password="a-password"), OWNER)
    assert isinstance(other, wire.ErrorFrame) and other.code == "name_taken"


def test_names_without_an_account_are_throttled_as_names_with_one_are() -> None:
    h = driver(max_sessions_per_account=100)
    h.auto_hash = True
    h.add_account("mallory", "mallory-password")
    # Failures at names that do not exist, each followed by a good login that clears the
    # address's record: no name, existing or not, may come out throttled because of them.
    for n in range(12):
        assert login_code(h, f"ghost{n}", "guess") == "unknown_user"
        assert login_code(h, "mallory", "mallory-password") == "welcome"
    assert login_code(h, "ghost99", "guess") == "unknown_user"  # checked, not throttled
    assert login_code(h, "alice", "guess") == "wrong_password"  # the same for a real one


def login_code(h: EngineDriver, name: str, password: str) -> str:
    answer = h.request(wire.Login(name=name, password=password), PROBER)
    return answer.code if isinstance(answer, wire.ErrorFrame) else "welcome"


def test_a_full_hashing_queue_answers_busy_before_a_name_is_looked_at() -> None:
    h = driver(hash_queue_limit=1)
    [attempt(h, (f"10.3.2.{a}", 1), "alice", "wrong password") for a in range(3)]
    taken = h.request(wire.Register(rid="t", name="alice", password="a-password"), PROBER)
    free = h.request(wire.Register(rid="f", name="nobody", password="a-password"), PROBER)
    assert [getattr(taken, "code", None), getattr(free, "code", None)] == ["busy", "busy"]


def test_an_account_guessed_at_from_a_thousand_addresses_still_answers_throttled() -> None:
    # A new address's first guess at an account is checked whatever the account's own
    # record holds (an owner is never kept out by others' guessing): a thousand addresses,
    # a small botnet or one IPv6 /48, add a thousand failures to the account in seconds.
    h = driver(login_free_failures=3, login_delay=1.0, login_delay_max=60.0)
    h.auto_hash = True
    for n in range(1030):
        guess = wire.Login(name="alice", password=f"guess number {n}")
        answer = h.request(guess, (f"10.8.{n // 256}.{n % 256}", 1))
        assert isinstance(answer, wire.ErrorFrame) and answer.code == "wrong_password"
    # The owner mistypes once; from then on the account's delay applies to the owner's
    # address too, and it is capped like any other.
    assert login_code_from(h, OWNER, "alice-passwrd") == ("wrong_password", None)
    code, retry_after = login_code_from(h, OWNER, "alice-password")
    assert (code, retry_after) == ("throttled", 60.0)  # at most 60 s, to the millisecond


def login_code_from(h: EngineDriver, address: Address, password: str) -> tuple[str, float | None]:
    answer = h.request(wire.Login(name="alice", password=password), address)
    if isinstance(answer, wire.ErrorFrame):
        return answer.code, answer.retry_after
    return "welcome", None


def test_names_that_could_be_mistaken_for_an_account_count_as_lookups_too() -> None:
    h = driver(alice=False, register_burst=1)
    h.auto_hash = True
    h.add_account("alice", "a-password")
    codes = []
    for n in range(4):
        answer = h.request(wire.Register(rid=f"c{n}", name="aIice", password="a-password"), PROBER)
        codes.append(answer.code if isinstance(answer, wire.ErrorFrame) else "registered")
    assert codes == ["name_taken"] * 3 + ["too_many_registrations"]


def test_a_login_to_an_account_at_its_cap_is_refused_before_a_check_is_spent() -> None:
    h = driver(max_sessions_per_account=1)
    h.auto_hash = True
    Peer(h, "alice", "alice-password", OWNER)
    checks = h.hashes_done
    extra = Peer(h, "alice", "alice-password", ("10.9.9.10", 1))
    assert isinstance(extra.connection.failure, TooManySessions)
    assert h.hashes_done == checks


def test_a_channel_whose_login_was_refused_is_closed_when_its_time_to_log_in_is_up() -> None:
    # A guess answered `wrong_password` leaves nothing under way: one guess a channel does
    # not keep channels open for good.
    h = driver()
    h.auto_hash = True
    guesser = Peer(h, None, address=(ATTACKER, 1))  # a channel, kept open after the guess
    seq = guesser.send(wire.Login(name="alice", password="not-her-password"))
    (refused,) = [f for f in guesser.frames if getattr(f, "re", None) == seq]
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "wrong_password"
    assert guesser.sid in h.engine.sessions
    h.advance(h.engine.config.login_timeout + 1.0)
    assert guesser.sid not in h.engine.sessions
