"""The sans-I/O session in memory: two sessions wired back to back, time passed by hand."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.errors import ConnectionClosed, PeerIdMismatch
from node.core.identity import Identity
from node.core.keys import NodeKeys
from node.transport import session as session_mod
from node.transport.messages import (
    MAX_CHUNK_PIECE,
    MAX_CHUNKED_PAYLOAD,
    MAX_DATA_PAYLOAD,
    MAX_PLAINTEXT,
    Chunk,
    CloseCode,
    Data,
    Ping,
    chunks_of,
    decode_message,
)
from node.transport.session import (
    TRANSITIONS,
    Authenticated,
    Closed,
    DataReceived,
    Event,
    Session,
    SessionState,
    SessionTimeouts,
    _Input,
)


def make_keys() -> NodeKeys:
    return NodeKeys.derive(Identity.generate())


class Pair:
    """A dialer and a listener whose outputs feed each other."""

    def __init__(self, expected_ok: bool = True, timeouts: SessionTimeouts | None = None) -> None:
        self.a_keys, self.b_keys = make_keys(), make_keys()
        expected = self.b_keys.identity.peer_id if expected_ok else make_keys().identity.peer_id
        self.now = 0.0
        self.a = Session(
            self.a_keys,
            initiator=True,
            now=0.0,
            expected_peer=expected,
            listen_addrs=("/ip4/127.0.0.1/tcp/4001",),
            timeouts=timeouts,
        )
        self.b = Session(self.b_keys, initiator=False, now=0.0, timeouts=timeouts)
        self.events_a: list[Event] = []
        self.events_b: list[Event] = []

    def pump(self) -> None:
        for _ in range(10):
            to_b, to_a = self.a.data_to_send(), self.b.data_to_send()
            if not to_b and not to_a:
                return
            if to_b:
                self.events_b += self.b.receive_data(to_b, self.now)
            if to_a:
                self.events_a += self.a.receive_data(to_a, self.now)

    def connect(self) -> None:
        self.a.start()
        self.pump()


def test_handshake_authenticates_both_sides() -> None:
    p = Pair()
    p.connect()
    assert p.a.state is SessionState.OPEN and p.b.state is SessionState.OPEN
    (auth_a,) = [e for e in p.events_a if isinstance(e, Authenticated)]
    (auth_b,) = [e for e in p.events_b if isinstance(e, Authenticated)]
    assert auth_a.peer_id == p.b_keys.identity.peer_id
    assert auth_b.peer_id == p.a_keys.identity.peer_id
    assert auth_b.listen_addrs == ("/ip4/127.0.0.1/tcp/4001",)
    assert auth_a.handshake_hash == auth_b.handshake_hash


def test_data_flows_both_ways_in_order() -> None:
    p = Pair()
    p.connect()
    for i in range(50):
        p.a.send_data("test", b"a%d" % i, p.now)
        p.b.send_data("test", b"b%d" % i, p.now)
    p.pump()
    assert [e.payload for e in p.events_b if isinstance(e, DataReceived)] == [
        b"a%d" % i for i in range(50)
    ]
    assert [e.payload for e in p.events_a if isinstance(e, DataReceived)] == [
        b"b%d" % i for i in range(50)
    ]


def test_wrong_identity_is_refused_before_dialer_reveals_itself() -> None:
    p = Pair(expected_ok=False)
    p.connect()
    (closed,) = [e for e in p.events_a if isinstance(e, Closed)]
    assert isinstance(closed.error, PeerIdMismatch)
    assert closed.code is CloseCode.IDENTITY_MISMATCH
    # The listener never learned who dialled: message 3 was never sent.
    assert p.b.state is SessionState.HANDSHAKING and p.b.peer_id is None


def test_garbage_closes_only_that_session() -> None:
    p = Pair()
    p.connect()
    events = p.b.receive_data(struct.pack(">H", 40) + b"\x00" * 40, p.now)
    (closed,) = [e for e in events if isinstance(e, Closed)]
    assert closed.by_peer and p.b.state is SessionState.CLOSED
    with pytest.raises(ConnectionClosed):
        p.b.send_data("test", b"x", p.now)


def test_a_decryption_failure_sends_close_then_ends(  # PROTOCOL.md 6.1 answers
) -> None:
    p = Pair()
    p.connect()
    events = p.b.receive_data(struct.pack(">H", 40) + b"\x00" * 40, p.now)
    (closed,) = [e for e in events if isinstance(e, Closed)]
    assert closed.code is CloseCode.PROTOCOL_ERROR
    # b's sending CipherState is unaffected: its Close reaches a, which decrypts it.
    out = p.b.data_to_send()
    assert out
    got = p.a.receive_data(out, p.now)
    (closed_a,) = [e for e in got if isinstance(e, Closed)]
    assert closed_a.by_peer and closed_a.code is CloseCode.PROTOCOL_ERROR
    # After a Close the receiver sends nothing more, not even a Close of its own.
    assert p.a.data_to_send() == b""
    assert p.a.close(CloseCode.NORMAL, "late", p.now) == [] and p.a.data_to_send() == b""


def test_garbage_handshake_is_refused() -> None:
    b = Session(make_keys(), initiator=False, now=0.0)
    events = b.receive_data(b"\x00\x20" + b"\xff" * 32 + b"\x00\x05hello", 0.0)
    assert any(isinstance(e, Closed) and e.by_peer for e in events)


def test_message_one_with_payload_is_refused() -> None:
    from node.transport.noise import HandshakeState

    hs = HandshakeState(
        session_mod.NOISE_PROTOCOL,
        initiator=True,
        prologue=session_mod.PROLOGUE,
        s=make_keys().noise_private,
        rng=lambda n: bytes(range(n)),
    )
    msg = hs.write_message(b"sneaky")
    b = Session(make_keys(), initiator=False, now=0.0)
    events = b.receive_data(struct.pack(">H", len(msg)) + msg, 0.0)
    assert any(isinstance(e, Closed) for e in events)


def test_truncated_handshake_times_out() -> None:
    timeouts = SessionTimeouts(handshake_s=5.0)
    a = Session(make_keys(), initiator=True, now=0.0, timeouts=timeouts)
    b = Session(make_keys(), initiator=False, now=0.0, timeouts=timeouts)
    a.start()
    first = a.data_to_send()
    assert b.receive_data(first[: len(first) // 2], 1.0) == []
    assert b.next_deadline() == 5.0
    (closed,) = b.handle_timeout(5.0)
    assert isinstance(closed, Closed) and closed.code is CloseCode.HANDSHAKE_FAILED
    assert "timed out" in closed.reason


def test_keepalive_measures_rtt_and_idle_closes() -> None:
    p = Pair(timeouts=SessionTimeouts(handshake_s=5, keepalive_s=10, idle_s=30))
    p.connect()
    p.now = 10.0
    assert p.a.handle_timeout(p.now) == []
    p.now = 10.25
    p.pump()  # ping to b, pong back to a
    assert p.a.rtt_s == pytest.approx(0.25)
    # b keeps hearing from a, a stops hearing from b only if b is silent: cut b off.
    p.now = 10.25 + 30
    events = p.a.handle_timeout(p.now)
    assert any(isinstance(e, Closed) and e.code is CloseCode.IDLE_TIMEOUT for e in events)


def test_close_sends_reason_to_peer() -> None:
    p = Pair()
    p.connect()
    p.a.close(CloseCode.SHUTDOWN, "bye", p.now)
    p.pump()
    (closed,) = [e for e in p.events_b if isinstance(e, Closed)]
    assert closed.by_peer and closed.code is CloseCode.SHUTDOWN and closed.reason == "bye"


def test_eof_is_a_close() -> None:
    p = Pair()
    p.connect()
    events = p.b.receive_data(b"", p.now)
    assert any(isinstance(e, Closed) and e.by_peer for e in events)


def test_both_sides_rekey_in_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "REKEY_INTERVAL", 4)
    p = Pair()
    p.connect()
    for i in range(20):
        p.a.send_data("t", bytes([i]), p.now)
        p.pump()
    got = [e.payload for e in p.events_b if isinstance(e, DataReceived)]
    assert got == [bytes([i]) for i in range(20)]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(SessionState, _Input)))
def test_transition_table_walk(state: SessionState, event: _Input) -> None:
    s = Session(make_keys(), initiator=False, now=0.0)
    s.state = state
    if (state, event) in TRANSITIONS:
        s._transition(event)
        assert s.state is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(ConnectionClosed):
            s._transition(event)
        assert s.state is state


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_never_raise(data: bytes, open_first: bool) -> None:
    if open_first:
        p = Pair()
        p.connect()
        target = p.b
    else:
        target = Session(make_keys(), initiator=False, now=0.0)
    events = target.receive_data(data, 0.0)
    assert all(isinstance(e, Authenticated | DataReceived | Closed) for e in events)


# -- chunked payloads -------------------------------------------------------------------------


def _send_raw(sender: Session, message: object) -> None:
    """Put an arbitrary transport message on the wire, bypassing send_data's rules."""
    sender._send_message(message, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "size", [MAX_DATA_PAYLOAD, MAX_DATA_PAYLOAD + 1, 3 * MAX_CHUNK_PIECE, MAX_CHUNKED_PAYLOAD]
)
def test_payloads_above_one_frame_are_chunked_and_reassembled(size: int) -> None:
    p = Pair()
    p.connect()
    payload = bytes(i % 251 for i in range(size))
    p.a.send_data("chan/1", payload, 0.0)
    p.a.send_data("chan/1", b"after", 0.0)
    p.pump()
    data = [e for e in p.events_b if isinstance(e, DataReceived)]
    assert [(d.protocol, d.payload) for d in data] == [("chan/1", payload), ("chan/1", b"after")]


def test_oversized_payload_is_the_callers_bug() -> None:
    p = Pair()
    p.connect()
    with pytest.raises(ValueError):
        p.a.send_data("chan/1", b"x" * (MAX_CHUNKED_PAYLOAD + 1), 0.0)


def test_ping_may_interleave_with_chunks() -> None:
    p = Pair()
    p.connect()
    total = MAX_DATA_PAYLOAD + 10
    first, second = chunks_of("p", b"\x07" * total)
    _send_raw(p.a, first)
    _send_raw(p.a, Ping(5))
    _send_raw(p.a, second)
    p.pump()
    data = [e for e in p.events_b if isinstance(e, DataReceived)]
    assert data == [DataReceived("p", b"\x07" * total)] and p.b.is_open


@pytest.mark.parametrize(
    "intruder",
    [
        Data("p", b"in the middle"),
        Chunk("q", MAX_DATA_PAYLOAD + 10, b"other protocol"),
        Chunk("p", MAX_DATA_PAYLOAD + 11, b"other total"),
        Chunk("p", MAX_DATA_PAYLOAD + 10, b"x" * MAX_CHUNK_PIECE),  # runs past the total
    ],
    ids=["data", "protocol", "total", "overrun"],
)
def test_a_broken_chunk_sequence_is_a_protocol_error(intruder: object) -> None:
    p = Pair()
    p.connect()
    first, _ = chunks_of("p", b"\x07" * (MAX_DATA_PAYLOAD + 10))
    _send_raw(p.a, first)
    _send_raw(p.a, intruder)
    p.pump()
    (closed,) = [e for e in p.events_b if isinstance(e, Closed)]
    assert closed.code is CloseCode.PROTOCOL_ERROR and closed.by_peer
    assert not [e for e in p.events_b if isinstance(e, DataReceived)]


def test_chunk_rules_on_construction() -> None:
    with pytest.raises(ValueError):
        Chunk("p", MAX_DATA_PAYLOAD, b"x")  # fits one Data: must not be chunked
    with pytest.raises(ValueError):
        Chunk("p", MAX_CHUNKED_PAYLOAD + 1, b"x")
    with pytest.raises(ValueError):
        Chunk("p", MAX_DATA_PAYLOAD + 1, b"")
    biggest = Chunk("a" * 32, MAX_CHUNKED_PAYLOAD, b"x" * MAX_CHUNK_PIECE)
    assert len(biggest.encode()) <= MAX_PLAINTEXT
    assert decode_message(biggest.encode()) == biggest
