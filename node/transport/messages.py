"""Transport-phase messages and the Noise handshake payload (see docs/PROTOCOL.md).

Every message is the plaintext of one Noise transport message: a canonical CBOR map
``{"v": 1, "t": <type>, ...fields}``. Decoding is strict: the version is checked first (so a
newer peer gets a clear "unsupported protocol version"), then the type, then the exact field set
and each field's type and bounds. Anything else raises :class:`node.core.errors.DecodeError`.

Constructors validate too, raising ``ValueError``/``TypeError``: building a bad message locally
is a bug, not a wire error.

``close_code_for`` is the one place where errors become wire close codes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from node.core import cbor
from node.core.errors import (
    ConnectionClosed,
    DecodeError,
    HandshakeError,
    IdentityError,
    LimitExceeded,
    MultiaddrError,
    PeerIdMismatch,
    TransportError,
)
from node.core.identity import Identity, PeerId
from node.core.multiaddr import MAX_MULTIADDR_LEN, Multiaddr

__all__ = [
    "HANDSHAKE_SIGNATURE_DOMAIN",
    "MAX_CHUNKED_PAYLOAD",
    "MAX_CHUNK_PIECE",
    "MAX_CLOSE_REASON_BYTES",
    "MAX_DATA_PAYLOAD",
    "MAX_LISTEN_ADDRS",
    "MAX_PLAINTEXT",
    "MAX_PROTOCOL_LEN",
    "PROTOCOL_VERSION",
    "Chunk",
    "Close",
    "CloseCode",
    "Data",
    "HandshakePayload",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "chunks_of",
    "close_code_for",
    "decode_message",
    "usable_listen_addrs",
]

PROTOCOL_VERSION = 1
# A Noise transport message is at most 65535 bytes including its 16-byte AEAD tag.
MAX_PLAINTEXT = 65535 - 16
# Leaves room for the CBOR map around a Data payload with the longest protocol name.
MAX_DATA_PAYLOAD = 65280
MAX_PROTOCOL_LEN = 32
# A payload longer than MAX_DATA_PAYLOAD travels as consecutive Chunk messages of at most
# MAX_CHUNK_PIECE bytes (room left for the "total" field), up to MAX_CHUNKED_PAYLOAD in all:
# enough for an MLS Welcome of a few thousand members, small enough that one reassembly
# buffer per link stays cheap.
MAX_CHUNK_PIECE = MAX_DATA_PAYLOAD - 16
MAX_CHUNKED_PAYLOAD = 1 << 20
MAX_CLOSE_REASON_BYTES = 256
MAX_LISTEN_ADDRS = 16
# Largest encoded handshake payload we accept (16 maximal addresses plus keys fit easily).
MAX_HANDSHAKE_PAYLOAD = 16384
HANDSHAKE_SIGNATURE_DOMAIN = b"spacepanda/noise-static-key/v1"

_UINT64_MAX = (1 << 64) - 1
_PROTOCOL_RE = re.compile(r"[a-z0-9][a-z0-9._/-]*\Z")


class MessageType(IntEnum):
    PING = 1
    PONG = 2
    CLOSE = 3
    DATA = 4
    CHUNK = 5


class CloseCode(IntEnum):
    """Why a link is closed, sent in :class:`Close`. Values are wire constants."""

    NORMAL = 0  # done with the link, nothing wrong
    SHUTDOWN = 1  # the node is stopping
    PROTOCOL_ERROR = 2  # the peer sent something that does not decode or is out of place
    IDLE_TIMEOUT = 3  # nothing received for too long
    DUPLICATE_CONNECTION = 4  # another link to the same peer won the tie-break
    LIMIT_REACHED = 5  # connection/queue/rate limit
    IDENTITY_MISMATCH = 6  # the peer proved a PeerId other than the one dialled
    HANDSHAKE_FAILED = 7  # bad handshake payload or signature
    INTERNAL_ERROR = 8  # our own bug or failure


def close_code_for(exc: BaseException) -> CloseCode:
    """The wire close code for an error that ends a link (the only such mapping)."""
    if isinstance(exc, ConnectionClosed):
        try:
            return CloseCode(exc.code)
        except ValueError:
            return CloseCode.PROTOCOL_ERROR
    if isinstance(exc, PeerIdMismatch):
        return CloseCode.IDENTITY_MISMATCH
    if isinstance(exc, HandshakeError):
        return CloseCode.HANDSHAKE_FAILED
    if isinstance(exc, DecodeError):
        return CloseCode.PROTOCOL_ERROR
    if isinstance(exc, LimitExceeded):
        return CloseCode.LIMIT_REACHED
    if isinstance(exc, TransportError) and exc.remote:
        return CloseCode.PROTOCOL_ERROR
    return CloseCode.INTERNAL_ERROR


# --------------------------------------------------------------------------- field checks


def _check_uint64(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= value <= _UINT64_MAX:
        raise ValueError(f"{name} must be 0..2**64-1")
    return value


def _check_str(name: str, value: object, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ValueError(f"{name} longer than {max_bytes} UTF-8 bytes")
    return value


def _check_bytes(name: str, value: object, min_len: int, max_len: int) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes")
    if not min_len <= len(value) <= max_len:
        if min_len == max_len:
            raise ValueError(f"{name} must be {min_len} bytes")
        raise ValueError(f"{name} must be {min_len}..{max_len} bytes")
    return value


def _check_protocol(name: object) -> None:
    _check_str("protocol", name, MAX_PROTOCOL_LEN)
    assert isinstance(name, str)
    if not _PROTOCOL_RE.match(name):
        raise ValueError(
            f"protocol name must be 1..{MAX_PROTOCOL_LEN} of a-z 0-9 . _ / - "
            f"starting with a letter or digit: {name!r:.40}"
        )


def _fields(obj: dict[Any, Any], expected: frozenset[str], what: str) -> None:
    keys = set(obj)
    missing = expected - keys
    if missing:
        raise DecodeError(f"{what}: missing field(s) {sorted(missing)}")
    extra = keys - expected
    if extra:
        raise DecodeError(f"{what}: unexpected field(s) {sorted(map(repr, extra))}")


def _version(obj: object, what: str) -> dict[Any, Any]:
    if not isinstance(obj, dict):
        raise DecodeError(f"{what} must be a CBOR map")
    if "v" not in obj:
        raise DecodeError(f"{what}: missing protocol version")
    v = obj["v"]
    if v != PROTOCOL_VERSION or isinstance(v, bool):
        raise DecodeError(f"unsupported protocol version {v!r:.20}")
    return obj


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Ping:
    """Keepalive probe; the peer answers with a :class:`Pong` carrying the same nonce."""

    nonce: int
    TYPE: ClassVar[MessageType] = MessageType.PING

    def __post_init__(self) -> None:
        _check_uint64("nonce", self.nonce)

    def _fields(self) -> dict[str, Any]:
        return {"nonce": self.nonce}

    @classmethod
    def _from_fields(cls, f: dict[Any, Any]) -> Ping:
        return cls(f["nonce"])

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True)
class Pong:
    """Answer to a :class:`Ping`."""

    nonce: int
    TYPE: ClassVar[MessageType] = MessageType.PONG

    def __post_init__(self) -> None:
        _check_uint64("nonce", self.nonce)

    def _fields(self) -> dict[str, Any]:
        return {"nonce": self.nonce}

    @classmethod
    def _from_fields(cls, f: dict[Any, Any]) -> Pong:
        return cls(f["nonce"])

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True)
class Close:
    """Last message on a link: why it is being closed. ``reason`` is for humans and logs."""

    code: CloseCode
    reason: str = ""
    TYPE: ClassVar[MessageType] = MessageType.CLOSE

    def __post_init__(self) -> None:
        if isinstance(self.code, bool) or not isinstance(self.code, int):
            raise TypeError("code must be a CloseCode")
        object.__setattr__(self, "code", CloseCode(self.code))  # ValueError if unknown
        _check_str("reason", self.reason, MAX_CLOSE_REASON_BYTES)

    def _fields(self) -> dict[str, Any]:
        return {"code": int(self.code), "reason": self.reason}

    @classmethod
    def _from_fields(cls, f: dict[Any, Any]) -> Close:
        code = f["code"]
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError("code must be an int")
        try:
            known = CloseCode(code)
        except ValueError:
            raise ValueError(f"unknown close code {code}") from None
        return cls(known, f["reason"])

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True)
class Data:
    """Opaque payload for a higher-layer protocol named by ``protocol`` (e.g. "dht", "chan/1")."""

    protocol: str
    payload: bytes
    TYPE: ClassVar[MessageType] = MessageType.DATA

    def __post_init__(self) -> None:
        _check_protocol(self.protocol)
        _check_bytes("payload", self.payload, 0, MAX_DATA_PAYLOAD)

    def _fields(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "payload": self.payload}

    @classmethod
    def _from_fields(cls, f: dict[Any, Any]) -> Data:
        return cls(f["protocol"], f["payload"])

    def encode(self) -> bytes:
        # The canonical CBOR of {"t": 4, "v": 1, "payload": ..., "protocol": ...}, built
        # directly: Data carries the bulk traffic. Tests prove it equals cbor.encode(...).
        proto = self.protocol.encode("ascii")
        return b"".join(
            (_DATA_PREFIX, _cbor_head(2, len(self.payload)), self.payload,
             _PROTOCOL_KEY, _cbor_head(3, len(proto)), proto)
        )


# Canonical key order is bytewise on encoded keys: "t", "v", "payload", "protocol".
_DATA_PREFIX = bytes.fromhex("a4617404617601677061796c6f6164")  # {t:4, v:1, "payload":
_PROTOCOL_KEY = bytes.fromhex("6870726f746f636f6c")  # "protocol"


def _cbor_head(major: int, length: int) -> bytes:
    """Minimal CBOR head for a byte or text string of ``length`` (< 65536) bytes."""
    top = major << 5
    if length < 24:
        return bytes((top | length,))
    if length < 256:
        return bytes((top | 24, length))
    return bytes((top | 25,)) + length.to_bytes(2, "big")


def _decode_data_fast(data: bytes) -> Data | None:
    """Parse the one canonical layout of a Data message; None means "use the strict path".

    Only input that is exactly what :meth:`Data.encode` produces is accepted here, so the
    result always equals the strict decoder's.
    """
    if not data.startswith(_DATA_PREFIX) or len(data) < 26:
        return None
    head = data[15]
    if 0x40 <= head < 0x58:
        start, size = 16, head - 0x40
    elif head == 0x58 and data[16] >= 24:
        start, size = 17, data[16]
    elif head == 0x59 and (size := int.from_bytes(data[16:18], "big")) >= 256:
        start = 18
    else:
        return None
    if size > MAX_DATA_PAYLOAD:
        return None
    end = start + size
    if data[end : end + 9] != _PROTOCOL_KEY or len(data) < end + 10:
        return None
    text_head = data[end + 9]
    if 0x61 <= text_head < 0x78:
        pstart, plen = end + 10, text_head - 0x60
    elif text_head == 0x78 and len(data) > end + 10 and 24 <= data[end + 10] <= MAX_PROTOCOL_LEN:
        pstart, plen = end + 11, data[end + 10]
    else:
        return None
    if pstart + plen != len(data):
        return None
    proto = data[pstart:]
    if not proto.isascii() or not _PROTOCOL_RE.match(proto.decode("ascii")):
        return None
    return Data(proto.decode("ascii"), data[start:end])


@dataclass(frozen=True)
class Chunk:
    """One piece of a payload too long for one Data message (see PROTOCOL.md 6.3).

    The pieces of one payload are sent back to back; each names the protocol and the
    ``total`` length of the whole payload, which must exceed MAX_DATA_PAYLOAD.
    """

    protocol: str
    total: int
    payload: bytes
    TYPE: ClassVar[MessageType] = MessageType.CHUNK

    def __post_init__(self) -> None:
        _check_protocol(self.protocol)
        _check_uint64("total", self.total)
        if not MAX_DATA_PAYLOAD < self.total <= MAX_CHUNKED_PAYLOAD:
            raise ValueError(
                f"total must be {MAX_DATA_PAYLOAD + 1}..{MAX_CHUNKED_PAYLOAD} (shorter "
                "payloads go in one Data message)"
            )
        _check_bytes("payload", self.payload, 1, MAX_CHUNK_PIECE)

    def _fields(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "total": self.total, "payload": self.payload}

    @classmethod
    def _from_fields(cls, f: dict[Any, Any]) -> Chunk:
        return cls(f["protocol"], f["total"], f["payload"])

    def encode(self) -> bytes:
        return _encode(self)


def chunks_of(protocol: str, payload: bytes) -> list[Chunk]:
    """Split a payload longer than MAX_DATA_PAYLOAD into Chunk messages, in order."""
    total = len(payload)
    return [
        Chunk(protocol, total, payload[i : i + MAX_CHUNK_PIECE])
        for i in range(0, total, MAX_CHUNK_PIECE)
    ]


Message = Ping | Pong | Close | Data | Chunk

_BY_TYPE: dict[int, type[Ping] | type[Pong] | type[Close] | type[Data] | type[Chunk]] = {
    MessageType.PING: Ping,
    MessageType.PONG: Pong,
    MessageType.CLOSE: Close,
    MessageType.DATA: Data,
    MessageType.CHUNK: Chunk,
}
_FIELD_NAMES: dict[int, frozenset[str]] = {
    MessageType.PING: frozenset({"v", "t", "nonce"}),
    MessageType.PONG: frozenset({"v", "t", "nonce"}),
    MessageType.CLOSE: frozenset({"v", "t", "code", "reason"}),
    MessageType.DATA: frozenset({"v", "t", "protocol", "payload"}),
    MessageType.CHUNK: frozenset({"v", "t", "protocol", "total", "payload"}),
}


def _encode(msg: Message) -> bytes:
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": int(msg.TYPE)}
    body.update(msg._fields())
    return cbor.encode(body)


def decode_message(data: bytes) -> Message:
    """Decode one transport-message plaintext. Raises ``DecodeError``."""
    if len(data) > MAX_PLAINTEXT:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_PLAINTEXT}")
    fast = _decode_data_fast(data)
    return fast if fast is not None else _decode_strict(data)


def _decode_strict(data: bytes) -> Message:
    """The general decoder: strict canonical CBOR, then field checks."""
    if len(data) > MAX_PLAINTEXT:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_PLAINTEXT}")
    # Messages are flat maps of at most 5 pairs: 1 + 10 items.
    obj = _version(
        cbor.decode(data, max_depth=1, max_items=11, max_size=MAX_PLAINTEXT), "message"
    )
    if "t" not in obj:
        raise DecodeError("message: missing type")
    t = obj["t"]
    if isinstance(t, bool) or not isinstance(t, int) or t not in _BY_TYPE:
        raise DecodeError(f"unknown message type {t!r:.20}")
    cls = _BY_TYPE[t]
    _fields(obj, _FIELD_NAMES[t], cls.__name__)
    try:
        return cls._from_fields(obj)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{cls.__name__}: {exc}") from None


# --------------------------------------------------------------------------- handshake payload

_HANDSHAKE_FIELDS = frozenset({"v", "identity_key", "signature", "listen_addrs"})


def usable_listen_addrs(entries: Iterable[str], peer: PeerId) -> tuple[str, ...]:
    """The entries of a peer's ``listen_addrs`` a receiver may use (PROTOCOL.md 5.3), as bare
    multiaddrs (no ``/p2p``), in order: each must parse (section 3: canonical, dialable, port
    not 0), name no other PeerId, have no unspecified host (``0.0.0.0``, ``::``) and not
    repeat an earlier one. The rest are ignored; none of them fails a handshake."""
    out: list[str] = []
    for text in entries:
        try:
            addr = Multiaddr.parse(text)
        except MultiaddrError:
            continue
        if addr.peer_id not in (None, peer):
            continue
        if addr.is_ip and ipaddress.ip_address(addr.host).is_unspecified:
            continue
        bare = str(addr.without_peer_id())
        if bare not in out:
            out.append(bare)
    return tuple(out)


def _signed_data(noise_static_pub: bytes) -> bytes:
    if not isinstance(noise_static_pub, bytes) or len(noise_static_pub) != 32:
        raise ValueError("Noise static public key must be 32 bytes")
    return HANDSHAKE_SIGNATURE_DOMAIN + noise_static_pub


@dataclass(frozen=True)
class HandshakePayload:
    """Carried in Noise XX messages 2 (responder) and 3 (initiator).

    Binds the sender's Ed25519 identity to its Noise static key. Decoding gives an
    *unverified* payload; only :meth:`verify` yields the PeerId the rest of the node trusts.
    """

    identity_key: bytes
    signature: bytes
    listen_addrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_bytes("identity_key", self.identity_key, 32, 32)
        _check_bytes("signature", self.signature, 64, 64)
        if not isinstance(self.listen_addrs, tuple):
            raise TypeError("listen_addrs must be a tuple of str")
        if len(self.listen_addrs) > MAX_LISTEN_ADDRS:
            raise ValueError(f"more than {MAX_LISTEN_ADDRS} listen addresses")
        for a in self.listen_addrs:
            # Only the shape is checked here: an entry a receiver cannot use is ignored, not
            # an error (PROTOCOL.md 5.3; see usable_listen_addrs).
            _check_str("listen address", a, MAX_MULTIADDR_LEN)

    @classmethod
    def create(
        cls,
        identity: Identity,
        noise_static_pub: bytes,
        listen_addrs: Iterable[str | Multiaddr] = (),
    ) -> HandshakePayload:
        """Sign ``noise_static_pub`` with ``identity`` and advertise ``listen_addrs``."""
        sig = identity.sign(_signed_data(noise_static_pub))
        addrs = tuple(str(a) for a in listen_addrs)
        if len(usable_listen_addrs(addrs, identity.peer_id)) != len(addrs):
            raise ValueError(
                "listen addresses must be usable by a receiver (parse, name no other PeerId, "
                f"no unspecified host, no repeats): {list(addrs)!r:.300}"
            )
        return cls(identity.public_key_bytes, sig, addrs)

    @property
    def peer_id(self) -> PeerId:
        """The PeerId *claimed* by this payload; trust it only after :meth:`verify`."""
        return PeerId.from_public_key(self.identity_key)

    def verify(self, noise_static_pub: bytes) -> PeerId:
        """Check the signature over the peer's Noise static key; return its proven PeerId.

        ``noise_static_pub`` must be the remote static key the Noise handshake authenticated.
        Raises ``HandshakeError`` if the signature does not verify.
        """
        try:
            signed = _signed_data(noise_static_pub)
        except ValueError as exc:
            raise HandshakeError(str(exc)) from None
        try:
            peer = self.peer_id
        except IdentityError as exc:  # a weak or non-canonical key (PROTOCOL.md 2.3)
            raise HandshakeError(f"identity key refused: {exc}") from None
        if not peer.verify(self.signature, signed):
            raise HandshakeError("identity signature over the Noise static key does not verify")
        return peer

    def encode(self) -> bytes:
        return cbor.encode(
            {
                "v": PROTOCOL_VERSION,
                "identity_key": self.identity_key,
                "signature": self.signature,
                "listen_addrs": list(self.listen_addrs),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> HandshakePayload:
        """Strictly decode (not verify) a handshake payload. Raises ``DecodeError``."""
        if len(data) > MAX_HANDSHAKE_PAYLOAD:
            raise DecodeError(f"handshake payload exceeds {MAX_HANDSHAKE_PAYLOAD} bytes")
        obj = _version(
            cbor.decode(
                data,
                max_depth=2,
                max_items=9 + MAX_LISTEN_ADDRS,
                max_size=MAX_HANDSHAKE_PAYLOAD,
            ),
            "handshake payload",
        )
        _fields(obj, _HANDSHAKE_FIELDS, "handshake payload")
        addrs = obj["listen_addrs"]
        if not isinstance(addrs, list):
            raise DecodeError("handshake payload: listen_addrs must be an array")
        try:
            return cls(obj["identity_key"], obj["signature"], tuple(addrs))
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"handshake payload: {exc}") from None
