"""Links in tests, without a channel: a payload sealed as its packet number and itself.

A `Link` hands every payload to a `seal` function; in the daemon and the client that is
the channel's encryption. Tests of the link alone use `plain_seal`, which keeps the
payload readable, and `plain_open` to read it back.
"""

from __future__ import annotations

import struct

from .. import wire
from ..secure import Channel, DaemonKeys, initiate, reset_token, respond

_PN = struct.Struct(">Q")


def plain_seal(pn: int, payload: bytes) -> bytes:
    """A "datagram" that is the packet number, then the payload as it is."""
    return _PN.pack(pn) + payload


def plain_open(datagram: bytes) -> tuple[int, wire.Payload]:
    """The packet number and the decoded payload of a `plain_seal` datagram."""
    (pn,) = _PN.unpack_from(datagram)
    return pn, wire.decode_payload_untrusted(datagram[_PN.size :])


def channel_pair() -> tuple[Channel, Channel]:
    """A client's and a daemon's channel, from a handshake done in memory."""
    keys = DaemonKeys.generate()
    initiation = initiate(keys.public, 7)
    init = wire.parse_datagram_untrusted(initiation.datagram())
    assert isinstance(init, wire.Init)
    token = reset_token(keys.reset_secret, 99)
    response, server = respond(keys.static_private, init, 99, token)
    parsed = wire.parse_datagram_untrusted(response)
    assert isinstance(parsed, wire.Response)
    client, _token = initiation.finish(parsed)
    return client, server
