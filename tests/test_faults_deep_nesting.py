"""JSON nested deeper than a parser's recursion limit, in every place trio-chat reads JSON
from the network: a `REFUSED`'s reason (anyone may send one, to the daemon or to a
client), an authentic payload, a frame.

A datagram of 1200 bytes holds over a thousand `[`s, deeper than the parser goes: it
must be refused as malformed (`WireError`), counted, and forgotten, like any other bad
input, never raise something else out of the engine or the client core.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trio_chat import wire
from trio_chat.testing.driver import EngineDriver, Peer

STRANGER = ("10.0.0.66", 5555)
ALICE = ("10.0.0.1", 4000)


def nested(head: bytes, size: int) -> bytes:
    """`head`, then as many `[`s as make it `size` bytes: JSON as deep as fits."""
    return head + b"[" * (size - len(head))


DEEP_REFUSED = nested(bytes((wire.REFUSED, wire.PROTOCOL_VERSION)) + b'{"x":', wire.MAX_DATAGRAM)
DEEP_PAYLOAD = nested(b'{"x":', wire.MAX_PAYLOAD)


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (wire.parse_datagram_untrusted, DEEP_REFUSED),
        (wire.decode_payload_untrusted, DEEP_PAYLOAD),
        (wire.decode_payload_untrusted, nested(b'{"frames":[[1,', wire.MAX_PAYLOAD)),
        (wire.decode_client_frame_untrusted, nested(b'{"t":"say","x":', wire.MAX_PAYLOAD)),
        (wire.decode_server_frame_untrusted, nested(b'{"t":"msg","x":', wire.MAX_PAYLOAD)),
    ],
)
def test_the_untrusted_parsers_refuse_deep_nesting_with_a_wire_error(
    parse: Callable[[bytes], object], data: bytes
) -> None:
    with pytest.raises(wire.WireError):
        parse(data)


def test_a_deeply_nested_datagram_from_a_stranger_is_dropped_and_counted() -> None:
    driver = EngineDriver()
    engine = driver.engine
    assert driver.receive(DEEP_REFUSED, STRANGER) == []
    assert engine.stats["bad_datagrams"] == 1
    assert not driver.sent


def test_a_deeply_nested_payload_is_dropped_and_the_session_goes_on() -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=ALICE)
    alice.settle()
    engine = driver.engine
    channel = alice.connection.channel
    assert channel is not None
    # An authentic record (alice holds the keys) whose payload is nested too deep.
    assert driver.receive(channel.seal(1000, DEEP_PAYLOAD), ALICE) == []
    assert engine.stats["bad_payloads"] == 1
    alice.send(wire.Say(text="still here", cid="c1"))
    assert [m.text for m in driver.stored_messages()] == ["still here"]


def test_a_deeply_nested_refused_does_not_stop_a_client_from_connecting() -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=ALICE, login=False)
    connection = alice.connection
    connection.start(driver.now)
    # Spoofed from the daemon's address while the client waits for its RESPONSE.
    connection.receive_datagram(DEEP_REFUSED, driver.now)
    assert not connection.closed
    alice.flush()
    assert connection.connected
