"""Keys on disk: the daemon's own (beside its database) and the daemons a client trusts.

The daemon keeps two secrets next to its database `NAME.db`, each readable by its owner only:
`NAME.key` (its static X25519 key: who it is) and `NAME.tickets` (the key that seals
resumption tickets; give several daemons the same one and each accepts the others'
tickets). Both are created on first start.

A client trusts a daemon's key the first time it meets it, as ssh does, and remembers
it in `known_servers` in its data folder (`~/.local/share/trio-chat/known_servers`), one
line per address: `HOST:PORT BASE64-KEY`. A key that differs later is an error, never
silently accepted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import ipaddress
import os
import re
import secrets
import shlex
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .noise import DHLEN, fingerprint, generate_keypair, public_key
from .secure import DaemonKeys


class KeyFileError(Exception):
    """A key file that cannot be read, written or understood; the message says which."""


def _reason(error: OSError) -> str:
    """Why a file could not be used, as the end of a sentence."""
    return (error.strerror or str(error)).lower()


def _encode(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _decode(text: str) -> bytes:
    key = base64.b64decode(text.strip(), validate=True)
    if len(key) != DHLEN:
        raise ValueError("a key is 32 bytes")
    return key


# --- the daemon's keys -------------------------------------------------------------------------


DATABASE_SUFFIXES = frozenset({"", ".db", ".sqlite", ".sqlite3", ".db3"})


def key_paths(database: Path) -> tuple[Path, Path]:
    """Where the static key and the ticket key of the daemon using `database` live.

    `chat.db` keeps `chat.key`; a name whose last dot does not start a database's
    extension keeps all of it (`room.v2` keeps `room.v2.key`), so that `room.v1` and
    `room.v2` hold keys of their own: a shared ticket key would let a ticket from one
    database resume a session in the other's account of the same number.
    """
    extension = database.suffix.lower() in DATABASE_SUFFIXES
    stem = database.with_suffix("") if extension else database
    return stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".tickets")


def older_key_path(database: Path) -> Path | None:
    """Where a trio-chat before databases kept keys of their own by their whole name kept
    this one's static key (`room.key` for `room.v2`), if not where it is kept now."""
    if not database.stem:
        return None
    older = database.with_suffix(".key")
    return None if older == key_paths(database)[0] else older


def secret_in(path: Path) -> bytes:
    """The 32-byte secret in the key file `path`; `KeyFileError` if it cannot be read or
    is damaged."""
    try:
        return _decode(path.read_text(encoding="ascii"))
    except OSError as error:
        raise KeyFileError(f"Cannot read the key file {str(path)!r}: {_reason(error)}.") from None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise KeyFileError(f"The key file {str(path)!r} is damaged.") from None


def _static_key() -> bytes:
    private, _public = generate_keypair()
    return private


def _ticket_key() -> bytes:
    """32 random bytes (an X25519 key has 5 of its bits fixed)."""
    return os.urandom(32)


_NEW_STATIC = "clients will then refuse the daemon until they trust the new one"
_NEW_TICKETS = "every session will then log in with its password once more"


def _secret(path: Path, without: str, new: Callable[[], bytes] = _static_key) -> bytes:
    """The 32-byte secret in `path`, created (mode 0600, by `new`) if the file is not
    there; `without`: what a new one would mean, for the sentence about a damaged file."""
    try:
        if path.exists():
            return _decode(path.read_text(encoding="ascii"))
        secret = new()
        _write_whole(path, _encode(secret) + "\n")
        return secret
    except OSError as error:
        raise KeyFileError(f"Cannot use the key file {str(path)!r}: {_reason(error)}.") from None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise KeyFileError(
            f"The key file {str(path)!r} is damaged; restore it, or remove it to make a new "
            f"key ({without})."
        ) from None


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[tuple[Path, int]]:
    """A new file beside `path` (mode 0600), and its descriptor, for the block to write;
    once it has, the file is synced and takes `path`'s place, so that `path` is there
    whole or not at all (a file the disk refused midway, or a crash left empty, would
    read as a damaged key at every start). If the block fails, the file is removed.

    Its name is one no one can guess, and it is made afresh: never written through a link
    someone put there, nor taken away by another process writing `path` at once (two
    clients trusting daemons on their first use, say).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.new")
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            yield temporary, fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name too
    except OSError as error:
        # Some file systems cannot sync a directory; the file is in place all the same.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(folder)


def _write_whole(path: Path, text: str) -> None:
    """Write `text` to `path`, whole or not at all (`written_whole`)."""
    with written_whole(path) as (_temporary, fd):
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data) :]


def copy_secret(source: Path, target: Path) -> None:
    """Copy a key file (a backup's): mode 0600, there whole or not at all."""
    _write_whole(target, source.read_text(encoding="ascii"))


def daemon_keys(database: Path) -> DaemonKeys:
    """The keys of the daemon using `database`, made on first use; `KeyFileError` for a
    key file that others may read."""
    static_path, ticket_path = key_paths(database)
    keys = DaemonKeys(
        _secret(static_path, _NEW_STATIC), _secret(ticket_path, _NEW_TICKETS, _ticket_key)
    )
    _owners_only(static_path, _NEW_STATIC)
    _owners_only(ticket_path, _NEW_TICKETS)
    return keys


def _owners_only(path: Path, without: str) -> None:
    """Refuse a key file that its group or others may read, as sshd refuses such a host
    key: a daemon that ran with one would keep it so unnoticed, and whoever read it can
    pose as the daemon (`NAME.key`) or log in as anyone (`NAME.tickets`)."""
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as error:
        raise KeyFileError(f"Cannot use the key file {str(path)!r}: {_reason(error)}.") from None
    if mode & 0o077:
        raise KeyFileError(
            f"The key file {str(path)!r} may be read by others (mode {mode:04o}): make it "
            f"its owner's alone (chmod 600 {shlex.quote(str(path))}), and if someone else "
            f"may have read it, remove it to make a new key ({without})."
        )


def daemon_public_key(database: Path) -> bytes:
    """The static public key of the daemon using `database` (the key must exist)."""
    static_path, _tickets = key_paths(database)
    if not static_path.exists():
        raise KeyFileError(
            f"There is no key at {str(static_path)!r}; `trio-chat serve` makes one on its "
            "first start."
        )
    return public_key(_secret(static_path, _NEW_STATIC))


# --- the daemons a client trusts -----------------------------------------------------------------


def data_folder() -> Path:
    """`$XDG_DATA_HOME/trio-chat`, by default `~/.local/share/trio-chat`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "trio-chat"


def known_servers_path() -> Path:
    return data_folder() / "known_servers"


def unbracketed(host: str) -> str:
    """`::1` for `[::1]`: an IPv6 address as written beside a port, as it is looked up."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def address_label(host: object, port: int) -> str:
    """`127.0.0.1:1600`, or `[::1]:1600` for IPv6 (given in brackets or not): how an address
    is shown everywhere, and the key of its line in `known_servers`."""
    host = unbracketed(str(host))
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def home_relative(path: Path) -> str:
    """`~/...` for a path in the home folder: short enough to show whole."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


@dataclass(frozen=True, slots=True)
class Trust:
    """The key to use for a daemon, and whether it was trusted just now (first use)."""

    key: bytes
    new: bool
    no_registrations: bool = False
    """The daemon said, showing its key, that it takes no registrations (false when it
    was not asked, or did not say)."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def first_use_notice(host: str, port: int, trust: Trust, known: Path) -> str:
    """What a client says when it has just trusted a daemon's key, met for the first time,
    and remembered it in the `known_servers` file at `known`."""
    return (
        f"The daemon at {address_label(host, port)} has the key {trust.fingerprint}; "
        f"trusting it from now on (remembered in {home_relative(known)})."
    )


def _known_as(host: str, port: int) -> str:
    """The label of `host:port` in `known_servers`: one for every spelling of it (a host
    name in any capitals, with its root's dot or not; an IP address written any way, an
    IPv4 one as an IPv6 address too: `::ffff:127.0.0.1` is 127.0.0.1, with a scope or not,
    which an IPv4 address has none of: `::ffff:127.0.0.1%1` reaches 127.0.0.1 all the same)."""
    name = unbracketed(host.strip())
    address, percent, scope = name.partition("%")  # a scope is an interface's name, as it is
    try:
        ip = ipaddress.ip_address(address)
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        name = str(mapped) if mapped is not None else str(ip) + percent + scope
    except ValueError:
        name = _ipv4_shorthand(name) or name.rstrip(".").lower()  # else a host name
    return address_label(name, port)


_IPV4_SHORTHAND = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]+|[0-9]+)){0,3}")


def _ipv4_shorthand(name: str) -> str | None:
    """An IPv4 address in a form the system's resolver takes as one and `ipaddress` does
    not (`127.1`, `0x7f.0.0.1`, `127.000.000.001`, octal parts), as `ipaddress` writes
    it; None for anything else."""
    if not _IPV4_SHORTHAND.fullmatch(name):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        return None


def _label_known_as(label: str) -> str:
    """A label read from `known_servers` (written by hand, or before labels were made
    one for every spelling) as `_known_as` makes it; as it is if it is no `HOST:PORT`."""
    if label.startswith("["):
        host, found, port = label[1:].partition("]:")
    else:
        host, found, port = label.partition(":")
        if ":" in port:
            return label  # an IPv6 address out of brackets: no `HOST:PORT`
    if not found or not host or not port.isdigit():
        return label
    return _known_as(host, int(port))


class KnownServers:
    """The `known_servers` file: read when asked, written when a key is trusted."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or known_servers_path()

    def _entries(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise KeyFileError(f"Cannot read {str(self.path)!r}: {_reason(error)}.") from None
        except UnicodeDecodeError:
            raise KeyFileError(
                f"The file {str(self.path)!r} is damaged (it is not text); remove it to "
                "trust daemons anew."
            ) from None
        entries: dict[str, str] = {}
        for line in text.splitlines():
            fields = line.split()  # spaces or tabs; what follows the key, a comment
            if len(fields) >= 2 and not fields[0].startswith("#"):
                entries[_label_known_as(fields[0])] = fields[1]
        return entries

    def get(self, host: str, port: int) -> bytes | None:
        """The key trusted for `host:port`, if any."""
        text = self._entries().get(_known_as(host, port))
        if text is None:
            return None
        try:
            return _decode(text)
        except (ValueError, binascii.Error):
            raise KeyFileError(
                f"The line for {address_label(host, port)} in {str(self.path)!r} is damaged; "
                "remove it to trust the daemon again."
            ) from None

    def remember(self, host: str, port: int, key: bytes) -> None:
        """Trust `key` for `host:port` from now on (replacing any earlier key)."""
        with self._changing():
            entries = self._entries()
            entries[_known_as(host, port)] = _encode(key)
            self._save(entries)

    def forget(self, host: str, port: int) -> bool:
        """Stop trusting any key for `host:port`; False if none was trusted."""
        with self._changing():
            entries = self._entries()
            if entries.pop(_known_as(host, port), None) is None:
                return False
            self._save(entries)
            return True

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the file's folder locked while the file is read, changed and written anew.

        Two commands trusting daemons at once (a script's, on their first use) would
        otherwise each write what it read, and one daemon's key would be lost: trusted
        on first use again, later, whatever key it then shows. The folder is locked, not
        the file, which each write replaces.
        """
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            held = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise KeyFileError(f"Cannot write {str(self.path)!r}: {_reason(error)}.") from None
        try:
            with contextlib.suppress(OSError):  # a file system without locks: as before
                fcntl.flock(held, fcntl.LOCK_EX)
            yield
        finally:
            os.close(held)  # and the lock with it

    def _save(self, entries: dict[str, str]) -> None:
        """Write the file anew, whole or not at all, as the daemon's keys are written."""
        text = "".join(f"{label} {value}\n" for label, value in sorted(entries.items()))
        try:
            _write_whole(self.path, text)
        except OSError as error:
            raise KeyFileError(f"Cannot write {str(self.path)!r}: {_reason(error)}.") from None


def checked_key(key: bytes) -> bytes:
    """A daemon key given as bytes, if it can be one (32 bytes); `KeyFileError` if not."""
    if len(key) != DHLEN:
        raise KeyFileError(
            f"{len(key)} bytes are not a daemon key: give its {DHLEN} bytes, its fingerprint "
            "(SHA256:...) or its public key (44 characters of base64)."
        )
    return key


def parse_key(text: str) -> bytes | str:
    """A key given by a person: a base64 public key (bytes), or a fingerprint (`SHA256:`)."""
    text = text.strip()
    try:
        if text[:7].upper() == "SHA256:":
            digest = text[7:]  # unpadded base64 of 32 bytes, as a key's is padded
            if _encode(_decode(digest + "=")).rstrip("=") != digest:
                raise ValueError("not a SHA-256 digest written as `fingerprint` writes it")
            return "SHA256:" + digest
        return _decode(text)
    except (ValueError, binascii.Error):
        raise KeyFileError(
            f"{text!r} is not a daemon key: give its fingerprint (SHA256:...) or its "
            "public key (44 characters of base64), as `trio-chat key` prints them."
        ) from None
