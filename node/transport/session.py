"""Sans-I/O secure session: Noise XX bound to Ed25519 identities, framing and keepalive.

Bytes from the socket go in through :meth:`Session.receive_data`, bytes for the socket come out
of :meth:`Session.data_to_send`, and what happened comes back as events. Time is passed in
(``now``) and randomness is injected, so the whole lifecycle runs in memory in tests.

Lifecycle (one transition table, see ``TRANSITIONS``)::

    HANDSHAKING --authenticated--> OPEN --close/fail/remote_close--> CLOSED
    HANDSHAKING --close/fail--> CLOSED

The dialer does not send its own identity (XX message 3) to a responder that proved a
different PeerId from the one expected: it aborts after message 2.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass

from node.core.errors import (
    ConnectionClosed,
    DecodeError,
    FrameTooLarge,
    HandshakeError,
    PeerIdMismatch,
    TransportError,
)
from node.core.identity import PeerId
from node.core.keys import NodeKeys
from node.transport.frames import FrameDecoder, frame_header
from node.transport.messages import (
    MAX_CHUNKED_PAYLOAD,
    MAX_DATA_PAYLOAD,
    MAX_HANDSHAKE_PAYLOAD,
    Chunk,
    Close,
    CloseCode,
    Data,
    HandshakePayload,
    Ping,
    Pong,
    chunks_of,
    close_code_for,
    decode_message,
    usable_listen_addrs,
)
from node.transport.noise import CipherState, HandshakeState

__all__ = [
    "NOISE_PROTOCOL",
    "PROLOGUE",
    "REKEY_INTERVAL",
    "TRANSITIONS",
    "Authenticated",
    "Closed",
    "DataReceived",
    "Event",
    "Session",
    "SessionState",
    "SessionTimeouts",
]

NOISE_PROTOCOL = "Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE = b"spacepanda/1"
# Both directions rekey after this many transport messages (Noise spec section 11.3); the
# count is implicit on both sides, so no rekey message is needed.
REKEY_INTERVAL = 1 << 20
# The largest valid handshake message: XX message 2 is e (32) + encrypted s (48) + the
# encrypted payload (at most MAX_HANDSHAKE_PAYLOAD + 16). A larger declared length during the
# handshake is garbage, refused as soon as its 2 length bytes arrive (PROTOCOL.md 4).
MAX_HANDSHAKE_FRAME = 32 + 48 + MAX_HANDSHAKE_PAYLOAD + 16


class SessionState(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


class _Input(enum.Enum):
    AUTHENTICATED = "authenticated"
    CLOSE = "close"
    FAIL = "fail"
    REMOTE_CLOSE = "remote_close"


TRANSITIONS: dict[tuple[SessionState, _Input], SessionState] = {
    (SessionState.HANDSHAKING, _Input.AUTHENTICATED): SessionState.OPEN,
    (SessionState.HANDSHAKING, _Input.CLOSE): SessionState.CLOSED,
    (SessionState.HANDSHAKING, _Input.FAIL): SessionState.CLOSED,
    (SessionState.HANDSHAKING, _Input.REMOTE_CLOSE): SessionState.CLOSED,
    (SessionState.OPEN, _Input.CLOSE): SessionState.CLOSED,
    (SessionState.OPEN, _Input.FAIL): SessionState.CLOSED,
    (SessionState.OPEN, _Input.REMOTE_CLOSE): SessionState.CLOSED,
}


@dataclass(frozen=True)
class SessionTimeouts:
    handshake_s: float = 10.0
    keepalive_s: float = 15.0
    idle_s: float = 45.0


@dataclass(frozen=True)
class Authenticated:
    """The peer proved ``peer_id``; the session is open."""

    peer_id: PeerId
    listen_addrs: tuple[str, ...]
    handshake_hash: bytes


@dataclass(frozen=True)
class DataReceived:
    protocol: str
    payload: bytes


@dataclass(frozen=True)
class Closed:
    """The session ended. ``by_peer`` is True when the peer sent Close or broke the protocol."""

    code: CloseCode
    reason: str
    by_peer: bool
    error: TransportError | None = None


Event = Authenticated | DataReceived | Closed


class Session:
    """One side of a SpacePanda link, from first handshake byte to close."""

    def __init__(
        self,
        keys: NodeKeys,
        *,
        initiator: bool,
        now: float,
        expected_peer: PeerId | None = None,
        listen_addrs: tuple[str, ...] = (),
        timeouts: SessionTimeouts | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        ephemeral: bytes | None = None,
    ) -> None:
        self._keys = keys
        self._initiator = initiator
        self._expected = expected_peer
        self._listen_addrs = listen_addrs
        self._timeouts = timeouts or SessionTimeouts()
        self._rng = rng
        self._handshake: HandshakeState | None = HandshakeState(
            NOISE_PROTOCOL,
            initiator=initiator,
            prologue=PROLOGUE,
            s=keys.noise_private,
            e=ephemeral,
            rng=rng,
        )
        self._send: CipherState | None = None
        self._recv: CipherState | None = None
        self._sent_count = 0
        self._recv_count = 0
        self._decoder = FrameDecoder()
        # A chunked payload being reassembled: protocol, total length, pieces so far.
        self._partial: tuple[str, int, list[bytes]] | None = None
        self._partial_len = 0
        self._out: list[bytes] = []  # frames waiting for the socket, joined once per flush
        self.state = SessionState.HANDSHAKING
        self.peer_id: PeerId | None = None
        self.peer_listen_addrs: tuple[str, ...] = ()
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        self._started = now
        self._last_received = now
        self._last_sent = now
        self._ping_nonce: int | None = None
        self._ping_sent_at = 0.0
        self.rtt_s: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_out = 0

    # -- lifecycle -------------------------------------------------------------------------

    def _transition(self, event: _Input) -> None:
        nxt = TRANSITIONS.get((self.state, event))
        if nxt is None:
            raise ConnectionClosed(f"illegal transition {self.state.value} --{event.value}")
        self.state = nxt

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def local_peer_id(self) -> PeerId:
        return self._keys.identity.peer_id

    @property
    def is_live(self) -> bool:
        return self.state is not SessionState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    def start(self) -> None:
        """Initiator only: queue XX message 1 (no payload: nothing is revealed yet)."""
        if not self._initiator or self._handshake is None:
            raise ConnectionClosed("start() is for a fresh initiator")
        self._write_frame(self._handshake.write_message(b""))

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        self.bytes_out += len(out)
        return out

    def _write_frame(self, message: bytes) -> None:
        self._out.append(frame_header(len(message)))
        self._out.append(message)
        self.frames_out += 1

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the socket. Protocol errors close the session (as events)."""
        if self.state is SessionState.CLOSED:
            return []
        if not data:
            return self._fail(
                ConnectionClosed("peer closed the connection", reason="eof"), by_peer=True
            )
        self.bytes_in += len(data)
        self._last_received = now
        events: list[Event] = []
        try:
            for frame in self._decoder.feed(data):
                self.frames_in += 1
                events.extend(self._handle_frame(frame, now))
                if not self.is_live:
                    break
            if self.state is SessionState.HANDSHAKING:
                pending = self._decoder.pending_length
                if pending is not None and pending > MAX_HANDSHAKE_FRAME:
                    raise FrameTooLarge(f"handshake frame of {pending} bytes")
        except TransportError as exc:
            events.extend(self._fail(exc, by_peer=exc.remote))
        return events

    def _handle_frame(self, frame: bytes, now: float) -> list[Event]:
        if self.state is SessionState.HANDSHAKING:
            return self._handle_handshake(frame)
        assert self._recv is not None
        plaintext = self._recv.decrypt_with_ad(b"", frame)
        self._recv_count += 1
        if self._recv_count % REKEY_INTERVAL == 0:
            self._recv.rekey()
        message = decode_message(plaintext)
        if isinstance(message, Chunk):
            return self._reassemble(message)
        if self._partial is not None and not isinstance(message, Ping | Pong | Close):
            raise DecodeError("a chunked payload was interrupted")
        if isinstance(message, Data):
            return [DataReceived(message.protocol, message.payload)]
        if isinstance(message, Ping):
            self._send_message(Pong(message.nonce), now)
            return []
        if isinstance(message, Pong):
            if message.nonce == self._ping_nonce:
                self.rtt_s = now - self._ping_sent_at
                self._ping_nonce = None
            return []
        if isinstance(message, Close):
            self._transition(_Input.REMOTE_CLOSE)
            self.close_code, self.close_reason = message.code, message.reason
            return [Closed(message.code, message.reason, by_peer=True)]
        raise DecodeError(f"unexpected message {type(message).__name__}")

    def _reassemble(self, chunk: Chunk) -> list[Event]:
        """Pieces of one payload arrive back to back (only Ping/Pong/Close may interleave);
        one buffer of at most MAX_CHUNKED_PAYLOAD bytes per session."""
        if self._partial is None:
            self._partial = (chunk.protocol, chunk.total, [])
            self._partial_len = 0
        protocol, total, pieces = self._partial
        if chunk.protocol != protocol or chunk.total != total:
            raise DecodeError("a chunk does not continue the payload being reassembled")
        self._partial_len += len(chunk.payload)
        if self._partial_len > total:
            raise DecodeError("chunks exceed their declared total")
        pieces.append(chunk.payload)
        if self._partial_len < total:
            return []
        self._partial = None
        return [DataReceived(protocol, b"".join(pieces))]

    def _handle_handshake(self, frame: bytes) -> list[Event]:
        hs = self._handshake
        assert hs is not None
        if len(frame) > MAX_HANDSHAKE_FRAME:
            raise FrameTooLarge(f"handshake frame of {len(frame)} bytes")
        if hs.is_our_turn:
            raise HandshakeError("peer sent a handshake message out of turn")
        payload_bytes = hs.read_message(frame)
        if hs.initiator:
            # XX message 2: the responder's identity. Verify before revealing ours.
            self._verify_peer(payload_bytes, hs)
            ours = HandshakePayload.create(
                self._keys.identity, self._keys.noise_public, self._listen_addrs
            )
            self._write_frame(hs.write_message(ours.encode()))
            return self._finish_handshake(hs)
        if self._is_first_message(hs):
            # XX message 1 carries no payload; answer with message 2 and our identity.
            if payload_bytes:
                raise HandshakeError("handshake message 1 must have an empty payload")
            ours = HandshakePayload.create(
                self._keys.identity, self._keys.noise_public, self._listen_addrs
            )
            self._write_frame(hs.write_message(ours.encode()))
            return []
        # XX message 3: the initiator's identity.
        self._verify_peer(payload_bytes, hs)
        return self._finish_handshake(hs)

    @staticmethod
    def _is_first_message(hs: HandshakeState) -> bool:
        # The responder has sent nothing yet exactly when it has no remote static key.
        return hs.remote_static is None

    def _verify_peer(self, payload_bytes: bytes, hs: HandshakeState) -> None:
        remote_static = hs.remote_static
        if remote_static is None:
            raise HandshakeError("peer static key missing")
        payload = HandshakePayload.decode(payload_bytes)
        peer_id = payload.verify(remote_static)
        if self._expected is not None and peer_id != self._expected:
            raise PeerIdMismatch(
                f"expected peer {self._expected.short()}, peer proved {peer_id.short()}"
            )
        if peer_id == self._keys.identity.peer_id:
            raise HandshakeError("peer presented our own identity")
        self.peer_id = peer_id
        # Hints only (never stored or dialled as such); entries we cannot use are dropped.
        self.peer_listen_addrs = usable_listen_addrs(payload.listen_addrs, peer_id)

    def _finish_handshake(self, hs: HandshakeState) -> list[Event]:
        if not hs.complete:
            raise HandshakeError("handshake did not complete")
        self._send, self._recv = hs.split()
        handshake_hash = hs.handshake_hash
        self._handshake = None
        self._transition(_Input.AUTHENTICATED)
        assert self.peer_id is not None
        return [Authenticated(self.peer_id, self.peer_listen_addrs, handshake_hash)]

    # -- sending ---------------------------------------------------------------------------

    def _send_message(self, message: Ping | Pong | Close | Data | Chunk, now: float) -> None:
        assert self._send is not None
        self._write_frame(self._send.encrypt_with_ad(b"", message.encode()))
        self._sent_count += 1
        if self._sent_count % REKEY_INTERVAL == 0:
            self._send.rekey()
        self._last_sent = now

    def send_data(self, protocol: str, payload: bytes, now: float) -> None:
        """Queue one payload: a Data message, or Chunks above MAX_DATA_PAYLOAD bytes.

        Raises ConnectionClosed unless the session is open, ValueError above
        MAX_CHUNKED_PAYLOAD (a caller's bug)."""
        if self.state is not SessionState.OPEN:
            raise ConnectionClosed(f"session is {self.state.value}", code=self.close_code or 0)
        if len(payload) <= MAX_DATA_PAYLOAD:
            self._send_message(Data(protocol, payload), now)
            return
        if len(payload) > MAX_CHUNKED_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_CHUNKED_PAYLOAD}")
        for chunk in chunks_of(protocol, payload):
            self._send_message(chunk, now)

    def close(self, code: CloseCode, reason: str, now: float) -> list[Event]:
        """Close locally; a Close message is queued when the session is open."""
        if self.state is SessionState.CLOSED:
            return []
        if self.state is SessionState.OPEN:
            self._send_message(Close(code, reason[:200]), now)
        self._transition(_Input.CLOSE)
        self.close_code, self.close_reason = code, reason
        return [Closed(code, reason, by_peer=False)]

    def _fail(self, exc: TransportError, *, by_peer: bool) -> list[Event]:
        code = close_code_for(exc)
        if self.state is SessionState.OPEN and not isinstance(exc, ConnectionClosed):
            # Tell the peer why, best effort; after a decrypt failure our send side still works.
            self._send_message(Close(code, str(exc)[:200]), self._last_received)
        self._handshake = None
        self._transition(_Input.FAIL)
        self.close_code, self.close_reason = code, str(exc)
        return [Closed(code, str(exc), by_peer=by_peer, error=exc)]

    # -- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        t = self._timeouts
        if self.state is SessionState.HANDSHAKING:
            return self._started + t.handshake_s
        if self.state is SessionState.OPEN:
            return min(self._last_received + t.idle_s, self._last_sent + t.keepalive_s)
        return None

    def handle_timeout(self, now: float) -> list[Event]:
        t = self._timeouts
        if self.state is SessionState.HANDSHAKING and now >= self._started + t.handshake_s:
            return self._fail(HandshakeError("handshake timed out"), by_peer=True)
        if self.state is not SessionState.OPEN:
            return []
        if now >= self._last_received + t.idle_s:
            return self.close(CloseCode.IDLE_TIMEOUT, "idle timeout", now)
        if now >= self._last_sent + t.keepalive_s:
            self._ping_nonce = int.from_bytes(self._rng(4), "big")
            self._ping_sent_at = now
            self._send_message(Ping(self._ping_nonce), now)
        return []
