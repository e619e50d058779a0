"""The database's schema: its version, the migrations that reach it, and how its rows
read as records (`account_of`, `message_of`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .records import Account, Message

SCHEMA_VERSION = 9

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: accounts and messages.
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        sender_id INTEGER NOT NULL REFERENCES accounts(id),
        recipient_id INTEGER REFERENCES accounts(id),
        text TEXT NOT NULL,
        cid TEXT,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_received ON messages(recipient_id, id)
        WHERE recipient_id IS NOT NULL;
    CREATE INDEX messages_sent_private ON messages(sender_id, id)
        WHERE recipient_id IS NOT NULL;
    CREATE INDEX messages_undelivered ON messages(recipient_id)
        WHERE recipient_id IS NOT NULL AND delivered = 0;
    """,
    # 1 -> 2: the request id that registered each account.
    """
    ALTER TABLE accounts ADD COLUMN rid TEXT;
    """,
    # 2 -> 3: the sessions open now and where their clients are, for a restart to tell.
    """
    CREATE TABLE sessions (
        sid INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        port INTEGER NOT NULL
    );
    """,
    # 3 -> 4: a message is stored once per sender and `cid`, however late it is resent.
    # Copies stored before (resent after more messages than the daemon kept in memory)
    # stay, as history showed them; only the first keeps its `cid`.
    """
    UPDATE messages SET cid = NULL WHERE cid IS NOT NULL AND id NOT IN (
        SELECT min(id) FROM messages WHERE cid IS NOT NULL GROUP BY sender_id, cid
    );
    CREATE UNIQUE INDEX messages_sent_once ON messages(sender_id, cid) WHERE cid IS NOT NULL;
    """,
    # 4 -> 5: accounts the operator muted.
    """
    ALTER TABLE accounts ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
    """,
    # 5 -> 6: networks the operator turned away.
    """
    CREATE TABLE bans (
        network TEXT PRIMARY KEY,
        created TEXT NOT NULL
    );
    """,
    # 6 -> 7: bans that end (NULL: for good).
    """
    ALTER TABLE bans ADD COLUMN until TEXT;
    """,
    # 7 -> 8: messages the operator removed (their text gone, their row kept so that a
    # resend is still known): `removed` is the newest message id stored when it was
    # removed, 0 for a message not removed.
    """
    ALTER TABLE messages ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
    """,
    # 8 -> 9: accounts the operator removed: when (NULL: not removed). The row stays, its
    # password hash emptied, as the author of its room messages; its key holds the name
    # until the operator gives it out again (then `RELEASED` and its id).
    """
    ALTER TABLE accounts ADD COLUMN removed TEXT;
    """,
)

RELEASED = " removed "
"""What a removed account's key becomes when the operator gives its name out again
(then its id): no name's key starts with a space."""

SELECT_HELD = (
    "SELECT name, key, removed FROM accounts"
    f" WHERE removed IS NOT NULL AND key NOT LIKE '{RELEASED}%' ORDER BY key"
)
"""The names removed accounts hold (display form, key, when removed): those not given
out again."""

SELECT_ACCOUNT_KEYS = "SELECT key FROM accounts WHERE removed IS NULL"
"""The keys of the accounts there are (not removed)."""

SELECT_MESSAGES = """
    SELECT m.id, m.ts, m.sender_id, s.name, m.text, m.recipient_id, r.name, m.cid
    FROM messages AS m
    JOIN accounts AS s ON s.id = m.sender_id
    LEFT JOIN accounts AS r ON r.id = m.recipient_id
"""

Row = tuple[int, str, int, str, str, int | None, str | None, str | None]


ACCOUNT_COLUMNS = "id, name, key, password_hash, created, rid, muted"


def account_of(row: Sequence[Any]) -> Account:
    """An account from a row that starts with `ACCOUNT_COLUMNS`."""
    return Account(
        id=row[0],
        name=row[1],
        key=row[2],
        password_hash=row[3],
        created=row[4],
        rid=row[5],
        muted=bool(row[6]),
    )


def message_of(row: Row) -> Message:
    return Message(
        id=row[0],
        ts=row[1],
        sender_id=row[2],
        sender=row[3],
        text=row[4],
        recipient_id=row[5],
        recipient=row[6],
        cid=row[7],
    )
