"""Passwords: argon2id hashes, made and checked."""

from __future__ import annotations

import functools
import secrets

import argon2

# OWASP's recommendation for argon2id: 19 MiB, two passes, one lane (~25 ms per hash).
_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """An argon2id hash of the password; slow on purpose, so call it in a worker thread."""
    return _hasher.hash(password)


def is_password_hash(text: str) -> bool:
    """Whether `text` is an argon2id hash that costs no more to check than four times
    this daemon's own (a hash made elsewhere, given by the operator)."""
    try:
        made = argon2.extract_parameters(text)
    except (argon2.exceptions.InvalidHashError, ValueError):
        return False
    ours = _hasher
    return (
        made.type is argon2.Type.ID
        and made.memory_cost <= 4 * ours.memory_cost
        and made.time_cost <= 4 * ours.time_cost
        and made.parallelism <= 4 * ours.parallelism
    )


@functools.cache
def _hash_of_nothing() -> str:
    return _hasher.hash(secrets.token_urlsafe(32))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches the hash; slow on purpose, like `hash_password`.

    An empty hash (a name with no account) is checked against a hash no password
    matches, at the same cost, and is always False.
    """
    if not password_hash:
        _check(_hash_of_nothing(), password)
        return False
    return _check(password_hash, password)


def _check(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
