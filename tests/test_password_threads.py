"""Password hashing runs below everything else the daemon does, on threads of its own."""

from __future__ import annotations

import os
import sys
import threading

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
