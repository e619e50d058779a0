"""What trio-chat keeps: accounts and messages, and the changes the daemon commits."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime

LOCK_MARK = "!"
"""Put before an account's password hash by `trio-chat accounts lock` (as `passwd -l` does
in /etc/shadow): the account logs in no more, its name stays taken, and unlocked its
password is as it was."""


def same_hash(one: str, other: str) -> bool:
    """Whether two password hashes are the same (compared in constant time, as any
    secret is)."""
    return hmac.compare_digest(one.encode(), other.encode())


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    """The display form (NFKC), as the person registered it."""
    key: str
    """The identity: NFKC and casefolded, unique."""
    password_hash: str = field(repr=False)
    """argon2id, with `LOCK_MARK` before it while the account is locked."""
    created: str
    rid: str | None = None
    """The request that registered it, so that request sent again after a crash is
    answered "registered" rather than "name taken"."""
    muted: bool = False
    """The operator muted it (`trio-chat accounts mute`): it reads the room, and may not
    say or whisper anything."""

    @property
    def locked(self) -> bool:
        return self.password_hash.startswith(LOCK_MARK)

    @property
    def hash_to_check(self) -> str:
        """The hash a password is checked against, locked or not (a locked account's
        right password is told apart from a wrong one)."""
        return self.password_hash.removeprefix(LOCK_MARK)

    def same_password(self, other: Account) -> bool:
        """Whether `other` (this account at another time) has the same password, locked
        or not."""
        return same_hash(self.hash_to_check, other.hash_to_check)


@dataclass(frozen=True, slots=True)
class Message:
    """A public message (no recipient) or a private one, as stamped by the server."""

    id: int
    ts: str
    sender_id: int
    sender: str
    text: str
    recipient_id: int | None = None
    recipient: str | None = None
    cid: str | None = None
    """The sender's own id for the message, so a message sent twice is kept once."""

    @property
    def private(self) -> bool:
        return self.recipient_id is not None


@dataclass(frozen=True, slots=True)
class MarkDelivered:
    """Private messages that reached a session of their recipient."""

    message_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A logged-in session and the address its client is at (again, when it moves): a
    daemon that restarts after a crash tells it at once that it is gone."""

    sid: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    sid: int


@dataclass(frozen=True, slots=True)
class PasswordSet:
    """A change to an account's password hash: a new password (`password_hash`), a lock
    (`lock=True`) or an unlock (`lock=False`), by the operator or by a session of the
    account. Each is applied to the hash as it is when stored (`applied`), in the store
    and in the daemon's memory alike: the operator's changes asked for at once keep what
    the others did (a lock stored after a new password is a lock of the new password);
    a session's is made only on the hash it checked (`expect`)."""

    account_id: int
    password_hash: str | None = field(default=None, repr=False)
    lock: bool | None = None
    expect: str | None = field(default=None, repr=False)
    """A session's change is made only on the hash whose old password it checked: one the
    operator reset or locked meanwhile is left as the operator made it."""

    def takes(self, password_hash: str) -> bool:
        """Whether this change applies to an account whose hash is `password_hash`."""
        return self.expect is None or same_hash(self.expect, password_hash)

    def applied(self, password_hash: str) -> str:
        """The hash an account has after this change, given the one it had."""
        if not self.takes(password_hash):
            return password_hash
        locked = password_hash.startswith(LOCK_MARK) if self.lock is None else self.lock
        new = self.password_hash
        if new is None:
            new = password_hash.removeprefix(LOCK_MARK)
        return (LOCK_MARK if locked else "") + new


@dataclass(frozen=True, slots=True)
class MuteSet:
    """The operator muted an account (`muted`), or let it speak again."""

    account_id: int
    muted: bool


_MAPPED_V6 = ipaddress.IPv6Network("::ffff:0:0/96")
"""IPv4 addresses as a dual-stack socket shows them (`::ffff:192.0.2.1`)."""


def network_name(text: str) -> str:
    """`text` (an address, or a network as `address/prefix`) in the one form it is kept
    in: `203.0.113.7/32`, `198.51.100.0/24`, `2001:db8::/64`; an IPv4 address written as
    a dual-stack socket shows it (`::ffff:203.0.113.7`) is kept as IPv4, and an IPv6
    scope (`%eth0`) is left out. `ValueError` with a sentence for what is neither."""
    address, slash, prefix = text.strip().partition("/")
    try:
        network = ipaddress.ip_network(address.split("%", 1)[0] + slash + prefix, strict=False)
    except ValueError:
        shown = repr(text) if text.isprintable() else ascii(text)  # no escape codes
        raise ValueError(
            f"{shown} is not an IP address or network (such as 203.0.113.7, "
            "198.51.100.0/24 or 2001:db8::/64)."
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V6):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return str(network)


def unix_time(stamp: str) -> float:
    """The Unix time of an ISO 8601 time (as `iso_time` writes it; without an offset,
    UTC). `ValueError` for what is not one."""
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class BanRecord:
    """A network the operator turned away, as it is kept and listed."""

    network: str
    """As `network_name` writes it: `203.0.113.7/32`, `2001:db8::/64`."""
    created: str
    """When it was banned (ISO 8601, UTC)."""
    until: str | None = None
    """When the ban ends (ISO 8601, UTC); None: never."""

    def ended(self, wall: float) -> bool:
        """Whether the ban no longer counts at Unix time `wall`."""
        return self.until is not None and unix_time(self.until) <= wall


@dataclass(frozen=True, slots=True)
class BanSet:
    """The operator turned a network away (`banned`), or let it in again."""

    network: str
    """As `network_name` writes it: `203.0.113.7/32`, `2001:db8::/64`."""
    banned: bool
    created: str = ""
    """When it was banned (ISO 8601, UTC)."""
    until: str | None = None
    """When the ban ends (ISO 8601, UTC); None: never. It replaces the network's ban
    before, if there was one."""
    changed: str = ""
    """When the operator made this change (ISO 8601, UTC): bans ended by then are
    forgotten with it."""

    def record(self) -> BanRecord:
        return BanRecord(self.network, self.created, self.until)


@dataclass(frozen=True, slots=True)
class MessageRemoval:
    """The operator removed a message from the room's history (`trio-chat messages
    remove`): kept as a mark, its text gone, so that a resend of it is still known."""

    message_id: int


@dataclass(frozen=True, slots=True)
class AccountRemoval:
    """The operator removed an account (`trio-chat accounts remove`): its password hash,
    its flags and the private messages sent to it are deleted; its row stays, the
    author of its room messages (and of the private ones it sent), and holds its name
    (`Snapshot.held`) until the operator makes an account of that name again."""

    account_id: int
    removed: str
    """When (ISO 8601, UTC)."""


AccountChange = PasswordSet | MuteSet
"""What the operator changes in an account."""
OperatorChange = AccountChange | AccountRemoval | BanSet | MessageRemoval
"""What the operator changes on a running daemon (`trio-chat accounts`, `bans`,
`messages`)."""
StoreOp = (
    Account
    | Message
    | MarkDelivered
    | SessionOpened
    | SessionClosed
    | AccountChange
    | AccountRemoval
    | BanSet
    | MessageRemoval
)


IDS_PER_MILLISECOND = 1000
MAX_CLOCK_ID = (2**53 - 1) // 2
"""Half of the message ids a frame may carry (`wire.MAX_SEQ`): a first id above it comes
from a clock gone wrong, and would leave too few ids to give."""


def first_message_id(wall: float) -> int:
    """The least id a daemon started at Unix time `wall` gives a message: the clock's
    milliseconds times `IDS_PER_MILLISECOND`, so that ids never go back when the newest
    messages are gone from the database a daemon starts on (a backup restored, rows
    deleted by hand). Its clients have seen those ids; given again to new messages, they
    would be taken for ones already shown, and dropped (private ones marked delivered).
    A daemon that gave out fewer than 1,000 ids a millisecond since it started (a million
    a second) stays below the next one's first id. 2**53 (`wire.Seq`) comes in 2255.
    A clock stepped back between two starts gives ids already given only if the newest
    stored ones are gone too (a restore): the daemon counts on from its newest stored id."""
    return int(wall * 1000) * IDS_PER_MILLISECOND


@dataclass(slots=True)
class Snapshot:
    """What the daemon loads from storage when it starts."""

    accounts: list[Account] = field(default_factory=list)
    recent: list[Message] = field(default_factory=list)
    """The newest messages, public and private, oldest first."""
    unread: dict[int, int] = field(default_factory=dict)
    """Account id -> how many private messages wait for it (acknowledged by none of its
    sessions; notes to oneself wait in none)."""
    public_count: int = 0
    next_message_id: int = 1
    stored_up_to: int | None = None
    """The newest message id on disk (None: one below `next_message_id`), which a daemon's
    first id, taken from its clock, may be far above."""
    next_account_id: int = 1
    sessions: list[SessionOpened] = field(default_factory=list)
    """The sessions open when the daemon last stopped: none, unless it crashed."""
    removals: list[tuple[int, int]] = field(default_factory=list)
    """The latest removals of room messages, oldest first: the newest message id stored
    when each was made, and the id of the message removed."""
    bans: list[BanRecord] = field(default_factory=list)
    """The networks the operator turned away, oldest first (ended bans too, until the
    operator's next change of bans forgets them)."""
    held: list[tuple[str, str]] = field(default_factory=list)
    """The names (display form, key) of removed accounts, which no registration may take:
    a newcomer would pass for the author of their history."""

    def ids_from_clock(self, wall: float) -> None:
        """Give out message ids from `first_message_id(wall)` on, as a daemon started at
        Unix time `wall` does, or after the newest stored if that is more. A clock set
        past 2112 (half of `wire.Seq`'s range: a bad RTC) is not taken."""
        if self.stored_up_to is None:
            self.stored_up_to = self.next_message_id - 1
        first = first_message_id(max(0.0, wall))
        if first <= MAX_CLOCK_ID:
            self.next_message_id = max(self.next_message_id, first)
