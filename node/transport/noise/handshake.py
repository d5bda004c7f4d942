"""``HandshakeState`` (spec rev 34, section 5.3): a sans-I/O engine that interprets the token
tables of ``patterns.py``.

Failure policy: anything wrong with what the peer sent raises ``HandshakeError`` and poisons
the state (every later call is a local error), so a half-processed handshake cannot be reused.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.core.errors import DecodeError, HandshakeError
from node.transport.noise._misuse import local_error
from node.transport.noise.cipher import MAX_MESSAGE_LEN, TAG_LEN, CipherState, ClosedCipherState
from node.transport.noise.dh import KeyPair, Rng
from node.transport.noise.patterns import Tokens
from node.transport.noise.protocol import NoiseProtocol, parse_protocol_name
from node.transport.noise.symmetric import SymmetricState

__all__ = ["PSK_LEN", "HandshakeState"]

PSK_LEN = 32


class HandshakeState:
    """One side of a Noise handshake.

    ``protocol`` is a full name (``Noise_XX_25519_ChaChaPoly_SHA256``), a bare pattern name
    (``XX``, default suite) or a parsed :class:`NoiseProtocol`. ``s``/``e`` are private keys;
    ``e`` is only for test vectors, otherwise ephemerals come from ``rng``. ``rs``/``re`` are
    the peer's public keys for pre-messages and are refused when the pattern has no such
    pre-message (silently ignoring an expected key would skip an authentication check).
    """

    __slots__ = (
        "_cipher_pair",
        "_dh",
        "_e",
        "_failed",
        "_index",
        "_initiator",
        "_protocol",
        "_psk_mode",
        "_psks",
        "_re",
        "_rng",
        "_rs",
        "_s",
        "_split_taken",
        "_ss",
    )

    def __init__(
        self,
        protocol: str | NoiseProtocol,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: bytes | None = None,
        e: bytes | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
        rng: Rng | None = None,
    ) -> None:
        proto = parse_protocol_name(protocol) if isinstance(protocol, str) else protocol
        pattern = proto.pattern
        self._protocol = proto
        self._dh = proto.dh
        self._initiator = initiator
        self._rng = rng
        self._index = 0
        self._failed = False
        self._split_taken = False
        self._cipher_pair: tuple[CipherState, CipherState] | None = None

        ours = [m for i, m in enumerate(pattern.messages) if (i % 2 == 0) == initiator]
        sent: set[str] = {t for m in ours for t in m}
        pre_ours, pre_theirs = (
            (pattern.pre_initiator, pattern.pre_responder)
            if initiator
            else (pattern.pre_responder, pattern.pre_initiator)
        )
        self._s = self._dh.keypair(s) if s is not None else None
        self._e = self._dh.keypair(e) if e is not None else None
        if self._s is None and ("s" in sent or "s" in pre_ours):
            raise local_error(f"{pattern.name} needs a local static key")
        if self._e is None and "e" in pre_ours:
            raise local_error(f"{pattern.name} needs a local ephemeral key")
        if self._e is None and "e" in sent and rng is None:
            raise local_error("an ephemeral key or an rng is required")
        self._rs = self._remote_key(rs, "s", pre_theirs, pattern.name)
        self._re = self._remote_key(re, "e", pre_theirs, pattern.name)

        if len(psks) != pattern.psk_count or any(len(p) != PSK_LEN for p in psks):
            raise local_error(f"{pattern.name} needs {pattern.psk_count} PSKs of {PSK_LEN} bytes")
        self._psks = list(psks)
        self._psk_mode = pattern.psk_count > 0

        ss = SymmetricState(proto.name.encode("ascii"), proto.cipher, proto.hash)
        ss.mix_hash(prologue)
        self._ss = ss
        init_keys = (self._s, self._e) if initiator else (self._rs, self._re)
        resp_keys = (self._rs, self._re) if initiator else (self._s, self._e)
        for tokens, (static, ephemeral) in (
            (pattern.pre_initiator, init_keys),
            (pattern.pre_responder, resp_keys),
        ):
            for token in tokens:
                key = static if token == "s" else ephemeral
                public = key.public if isinstance(key, KeyPair) else key
                assert public is not None  # checked above
                ss.mix_hash(public)
                if token == "e" and self._psk_mode:
                    ss.mix_key(public)

    def _remote_key(
        self, key: bytes | None, token: str, pre_theirs: Tokens, pattern: str
    ) -> bytes | None:
        if (key is not None) != (token in pre_theirs):
            what = "needs" if key is None else "has no pre-message for"
            raise local_error(f"{pattern} {what} the remote {token} key")
        if key is not None and len(key) != self._dh.dhlen:
            raise local_error(f"remote {token} key must be {self._dh.dhlen} bytes")
        return key

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return (
            f"HandshakeState({self._protocol.name}, {role}, message={self._index}, "
            f"complete={self.complete}, failed={self._failed})"
        )

    # -- read-only view -------------------------------------------------------------------

    @property
    def protocol(self) -> NoiseProtocol:
        return self._protocol

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def complete(self) -> bool:
        return self._cipher_pair is not None or self._split_taken

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def is_our_turn(self) -> bool:
        """True when the next call should be ``write_message``."""
        return not (self.complete or self._failed) and (self._index % 2 == 0) == self._initiator

    @property
    def handshake_hash(self) -> bytes:
        """``h``: final after completion; use it for channel binding."""
        self._check_alive()
        return self._ss.handshake_hash

    @property
    def remote_static(self) -> bytes | None:
        return self._rs

    @property
    def local_static(self) -> bytes | None:
        return self._s.public if self._s is not None else None

    # -- messages -------------------------------------------------------------------------

    def write_message(self, payload: bytes) -> bytes:
        self._check_alive()
        if self.complete:
            raise local_error("handshake already complete")
        if not self.is_our_turn:
            raise local_error("write_message called when the peer must send")
        tokens = self._protocol.pattern.messages[self._index]
        if self._written_len(tokens, len(payload)) > MAX_MESSAGE_LEN:
            raise local_error(f"handshake message would exceed {MAX_MESSAGE_LEN} bytes")
        try:
            out = self._write(tokens, payload)
        except ValueError as exc:  # a peer key that gives a low-order DH result
            self._fail()
            raise HandshakeError("Noise DH failed (low-order public key)") from exc
        except BaseException:
            self._fail()
            raise
        self._advance()
        return out

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's message and return its payload."""
        self._check_alive()
        if self.complete:
            raise local_error("handshake already complete")
        if self.is_our_turn:
            raise local_error("read_message called when we must send")
        if not isinstance(message, bytes | bytearray | memoryview):
            raise local_error("read_message needs bytes")  # bytes(int) would not fail
        try:
            payload = self._read(self._protocol.pattern.messages[self._index], bytes(message))
        except HandshakeError:
            self._fail()
            raise
        except (DecodeError, ValueError) as exc:
            self._fail()
            raise HandshakeError(f"bad Noise handshake message: {exc}") from exc
        except BaseException:
            self._fail()
            raise
        self._advance()
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, recv)`` transport ciphers for this side; callable once, after completion.

        In one-way patterns the direction towards the initiator is a ``ClosedCipherState``.
        """
        self._check_alive()
        pair = self._cipher_pair
        if pair is None:
            raise local_error("split() needs a complete handshake, and works once")
        self._cipher_pair = None
        self._split_taken = True
        return pair

    # -- engine ---------------------------------------------------------------------------

    def _written_len(self, tokens: Tokens, payload_len: int) -> int:
        has_key = self._ss.has_key()
        size = 0
        for token in tokens:
            if token == "e":
                size += self._dh.dhlen
                has_key = has_key or self._psk_mode
            elif token == "s":
                size += self._dh.dhlen + (TAG_LEN if has_key else 0)
            else:
                has_key = True
        return size + payload_len + (TAG_LEN if has_key else 0)

    def _write(self, tokens: Tokens, payload: bytes) -> bytes:
        ss = self._ss
        parts: list[bytes] = []
        for token in tokens:
            if token == "e":
                if self._e is None:
                    assert self._rng is not None  # checked in __init__
                    self._e = self._dh.generate(self._rng)
                parts.append(self._e.public)
                ss.mix_hash(self._e.public)
                if self._psk_mode:
                    ss.mix_key(self._e.public)
            elif token == "s":
                assert self._s is not None  # checked in __init__
                parts.append(ss.encrypt_and_hash(self._s.public))
            else:
                self._mix_token(token)
        parts.append(ss.encrypt_and_hash(payload))
        return b"".join(parts)

    def _read(self, tokens: Tokens, data: bytes) -> bytes:
        if len(data) > MAX_MESSAGE_LEN:
            raise HandshakeError(f"handshake message exceeds {MAX_MESSAGE_LEN} bytes")
        ss = self._ss
        dhlen = self._dh.dhlen
        pos = 0
        for token in tokens:
            if token == "e":
                if len(data) - pos < dhlen:
                    raise HandshakeError("handshake message too short")
                self._re = data[pos : pos + dhlen]
                pos += dhlen
                ss.mix_hash(self._re)
                if self._psk_mode:
                    ss.mix_key(self._re)
            elif token == "s":
                size = dhlen + (TAG_LEN if ss.has_key() else 0)
                if len(data) - pos < size:
                    raise HandshakeError("handshake message too short")
                self._rs = ss.decrypt_and_hash(data[pos : pos + size])
                pos += size
            else:
                self._mix_token(token)
        if ss.has_key() and len(data) - pos < TAG_LEN:
            raise HandshakeError("handshake message too short")
        return ss.decrypt_and_hash(data[pos:])

    def _mix_token(self, token: str) -> None:
        if token == "psk":
            self._ss.mix_key_and_hash(self._psks.pop(0))
            return
        # Which of our keys meets which of theirs; es/se are named initiator-first.
        ours, theirs = token[0], token[1]
        if not self._initiator:
            ours, theirs = theirs, ours
        local = self._s if ours == "s" else self._e
        remote = self._rs if theirs == "s" else self._re
        if local is None or remote is None:
            raise local_error(f"token {token} without the keys it needs")
        self._ss.mix_key(self._dh.dh(local, remote))

    def _advance(self) -> None:
        self._index += 1
        pattern = self._protocol.pattern
        if self._index < len(pattern.messages):
            return
        c1, c2 = self._ss.split()
        if pattern.one_way:
            closed = ClosedCipherState(c1.cipher)
            self._cipher_pair = (c1, closed) if self._initiator else (closed, c1)
        else:
            self._cipher_pair = (c1, c2) if self._initiator else (c2, c1)
        # The ephemeral private key is no longer needed once the handshake is over.
        self._e = None

    def _check_alive(self) -> None:
        if self._failed:
            raise local_error("Noise handshake state is unusable after a failure")

    def _fail(self) -> None:
        self._failed = True
        self._e = None
        self._s = None
        self._psks = []
        self._cipher_pair = None
