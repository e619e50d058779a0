"""Password hashing: argon2id at the cost OWASP recommends (and no hash the operator gives
that costs much more), run below everything else the daemon does, on threads of its own."""

from __future__ import annotations

import os
import sys
import threading

import argon2
import pytest
import trio

from trio_chat import auth
from trio_chat.server import PASSWORD_THREAD_NICENESS, PasswordThreads


def _priority() -> tuple[int, int]:
    """The calling thread's scheduling class and nice value (Linux keeps both per thread)."""
    thread = threading.get_native_id()
    return os.sched_getscheduler(thread), os.getpriority(os.PRIO_PROCESS, thread)


async def test_hashing_threads_take_the_idle_class_and_a_higher_nice_value() -> None:
    assert sys.platform.startswith("linux"), "trio-chat's daemon lowers priorities on Linux"
    policy, niceness = _priority()
    passwords = PasswordThreads(1)
    try:
        with trio.fail_after(10):
            their_policy, their_niceness = await passwords.run(_priority)
            hashed = await passwords.run(auth.hash_password, "correct horse")
            assert await passwords.run(auth.verify_password, hashed, "correct horse")
    finally:
        passwords.close()
    assert (policy, their_policy) == (os.SCHED_OTHER, os.SCHED_IDLE)
    assert their_niceness == min(niceness + PASSWORD_THREAD_NICENESS, 19)
    assert _priority() == (policy, niceness)  # the event loop's thread is untouched


def test_the_daemon_hashes_as_owasp_recommends_for_argon2id() -> None:
    made = argon2.extract_parameters(auth.hash_password("correct horse"))
    assert (made.type, made.memory_cost, made.time_cost, made.parallelism) == (
        argon2.Type.ID,
        19 * 1024,
        2,
        1,
    )


def test_a_hash_given_by_the_operator_costs_at_most_four_times_the_daemons_own() -> None:
    """A hash made elsewhere is taken if checking it costs no more than four times this
    daemon's own in memory, passes and lanes: every login to the account pays for it."""
    ours = auth.hash_password("correct horse")
    _, kind, version, _costs, salt, digest = ours.split("$")

    def costing(memory: int, passes: int, lanes: int, kind: str = kind) -> str:
        return "$".join(["", kind, version, f"m={memory},t={passes},p={lanes}", salt, digest])

    assert auth.is_password_hash(ours)
    assert auth.is_password_hash(costing(4 * 19 * 1024, 4 * 2, 4 * 1))
    assert not auth.is_password_hash(costing(4 * 19 * 1024 + 1, 2, 1))
    assert not auth.is_password_hash(costing(19 * 1024, 4 * 2 + 1, 1))
    assert not auth.is_password_hash(costing(19 * 1024, 2, 4 * 1 + 1))
    assert not auth.is_password_hash(costing(19 * 1024, 2, 1, kind="argon2i"))
    assert not auth.is_password_hash(costing(19 * 1024, 2, 1, kind="argon2d"))
    assert not auth.is_password_hash("plain")


def test_a_name_without_an_account_costs_one_check_and_never_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    check = auth._check

    def counted(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return check(password_hash, password)

    monkeypatch.setattr(auth, "_check", counted)
    assert auth.verify_password("", "correct horse") is False
    [nothing] = checked  # a real argon2id hash, at the daemon's own cost
    assert auth.is_password_hash(nothing)
    assert argon2.extract_parameters(nothing) == argon2.extract_parameters(
        auth.hash_password("correct horse")
    )
    checked.clear()
    hashed = auth.hash_password("correct horse")
    assert auth.verify_password(hashed, "correct horse")
    assert not auth.verify_password(hashed, "wrong horse")
    assert checked == [hashed, hashed]  # one check each
    # A hash the database holds that is none (a damaged one) refuses, without an error.
    for damaged in ("$argon2id$damaged", "damaged"):
        assert auth.verify_password(damaged, "correct horse") is False
