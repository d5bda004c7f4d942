"""Signed peer records: what a node publishes in the DHT about itself.

Wire form (canonical CBOR)::

    record = [1, body: bstr, signature: bstr(64)]
    body   = {"addrs": [tstr, ...], "env": bstr(32), "exp": uint, "key": bstr(32),
              "noise": bstr(32), "peer": bstr(34), "seq": uint}

The signature is Ed25519 by ``key`` over ``b"spacepanda/peer-record/v1" || body``; ``peer``
must be the PeerId of ``key``. ``decode`` only checks structure and gives an unverified
:class:`PeerRecord`; only :meth:`PeerRecord.verify` gives the :class:`VerifiedPeerRecord` the
rest of the node acts on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from dht.errors import RecordError
from node.core import cbor
from node.core.errors import DecodeError, IdentityError, MultiaddrError
from node.core.identity import Identity, PeerId
from node.core.multiaddr import Multiaddr

__all__ = [
    "MAX_ADDRS",
    "MAX_ADDR_LEN",
    "MAX_RECORD_SIZE",
    "MAX_TTL",
    "PeerRecord",
    "VerifiedPeerRecord",
    "record_key",
]

_VERSION = 1
_SIGN_DOMAIN = b"spacepanda/peer-record/v1"
_KEY_DOMAIN = b"spacepanda/record-key/v1"
MAX_ADDRS = 8
MAX_ADDR_LEN = 128
# A STORE datagram is 1 + 20 (rpcudp header) + ~60 bytes of msgpack framing + the record; the
# whole datagram must stay under ~1200 bytes so it never fragments on ordinary paths.
MAX_RECORD_SIZE = 1100
# A record may claim to stay valid for at most this long (seconds), so a leaked old record
# cannot be made to live for years.
MAX_TTL = 7 * 24 * 3600
_UINT64_MAX = (1 << 64) - 1
_BODY_KEYS = frozenset({"addrs", "env", "exp", "key", "noise", "peer", "seq"})


def record_key(peer_id: PeerId) -> bytes:
    """The 160-bit DHT key under which ``peer_id``'s record is stored."""
    return hashlib.sha1(_KEY_DOMAIN + peer_id.binary).digest()


def _check_fields(
    peer_id: PeerId,
    noise_static_key: bytes,
    envelope_key: bytes,
    addrs: tuple[str, ...],
    seq: int,
    expires_at: int,
) -> None:
    if not isinstance(peer_id, PeerId):
        raise RecordError("peer_id must be a PeerId")
    for name, key in (("noise_static_key", noise_static_key), ("envelope_key", envelope_key)):
        if not isinstance(key, bytes) or len(key) != 32:
            raise RecordError(f"{name} must be 32 bytes")
    if not isinstance(addrs, tuple) or len(addrs) > MAX_ADDRS:
        raise RecordError(f"at most {MAX_ADDRS} addresses")
    for addr in addrs:
        if not isinstance(addr, str) or not addr or len(addr.encode()) > MAX_ADDR_LEN:
            raise RecordError(f"each address must be a 1..{MAX_ADDR_LEN}-byte string")
    for name, value in (("seq", seq), ("expires_at", expires_at)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT64_MAX:
            raise RecordError(f"{name} must be a uint64")


_Fields = tuple[PeerId, bytes, bytes, tuple[str, ...], int, int]


def _decode_body(body: bytes) -> _Fields:
    """The fields of a record body (canonical CBOR map), checked; raises RecordError."""
    try:
        fields: Any = cbor.decode(body, max_depth=2, max_items=32, max_size=MAX_RECORD_SIZE)
    except DecodeError as exc:
        raise RecordError(f"record body is not canonical CBOR: {exc}") from None
    if not isinstance(fields, dict) or set(fields) != _BODY_KEYS:
        raise RecordError("record body must be a map with exactly the known fields")
    addrs = fields["addrs"]
    if not isinstance(addrs, list):
        raise RecordError("addrs must be an array")
    if not isinstance(fields["peer"], bytes) or not isinstance(fields["key"], bytes):
        raise RecordError("peer and key must be bytes")
    try:
        peer_id = PeerId(fields["peer"])
    except IdentityError as exc:
        raise RecordError(f"bad peer id: {exc}") from None
    if fields["key"] != peer_id.public_key_bytes:
        raise RecordError("identity key does not match the PeerId")
    args = (peer_id, fields["noise"], fields["env"], tuple(addrs), fields["seq"], fields["exp"])
    _check_fields(*args)
    return args


@dataclass(frozen=True)
class PeerRecord:
    """A decoded but *unverified* record. Call :meth:`verify` before acting on it."""

    peer_id: PeerId
    noise_static_key: bytes
    envelope_key: bytes
    addrs: tuple[str, ...]
    seq: int
    expires_at: int
    signature: bytes
    body: bytes
    # Set only by ``decode`` (the fields were just read from ``body``). Not an init field, so
    # ``dataclasses.replace`` and direct construction always get False and are checked.
    _from_body: bool = field(default=False, init=False, compare=False, repr=False)

    @property
    def identity_key(self) -> bytes:
        return self.peer_id.public_key_bytes

    @property
    def key(self) -> bytes:
        """The DHT key this record belongs under."""
        return record_key(self.peer_id)

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        noise_static_key: bytes,
        envelope_key: bytes,
        addrs: list[str] | tuple[str, ...],
        seq: int,
        expires_at: int,
    ) -> PeerRecord:
        """Sign a record for ``identity``; raises :class:`RecordError` if it would not fit."""
        addrs_t = tuple(addrs)
        _check_fields(identity.peer_id, noise_static_key, envelope_key, addrs_t, seq, expires_at)
        body = cbor.encode(
            {
                "addrs": list(addrs_t),
                "env": envelope_key,
                "exp": expires_at,
                "key": identity.public_key_bytes,
                "noise": noise_static_key,
                "peer": identity.peer_id.binary,
                "seq": seq,
            }
        )
        record = cls(
            identity.peer_id,
            noise_static_key,
            envelope_key,
            addrs_t,
            seq,
            expires_at,
            identity.sign(_SIGN_DOMAIN + body),
            body,
        )
        if len(record.encode()) > MAX_RECORD_SIZE:
            raise RecordError(f"record larger than {MAX_RECORD_SIZE} bytes (too many addresses?)")
        return record

    def encode(self) -> bytes:
        return cbor.encode([_VERSION, self.body, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> PeerRecord:
        """Strictly decode; raises :class:`RecordError`. Does not check the signature."""
        if not isinstance(data, bytes):
            raise RecordError("record must be bytes")
        if len(data) > MAX_RECORD_SIZE:
            raise RecordError(f"record larger than {MAX_RECORD_SIZE} bytes")
        try:
            outer = cbor.decode(data, max_depth=1, max_items=4, max_size=MAX_RECORD_SIZE)
        except DecodeError as exc:
            raise RecordError(f"record is not canonical CBOR: {exc}") from None
        if not isinstance(outer, list) or len(outer) != 3:
            raise RecordError("record must be a 3-element array")
        version, body, signature = outer
        if version != _VERSION or isinstance(version, bool):
            raise RecordError(f"unsupported record version {version!r:.20}")
        if not isinstance(body, bytes) or not isinstance(signature, bytes) or len(signature) != 64:
            raise RecordError("record body must be bytes and signature 64 bytes")
        record = cls(*_decode_body(body), signature, body)
        object.__setattr__(record, "_from_body", True)
        return record

    def verify(self, now: float) -> VerifiedPeerRecord:
        """Check signature, key binding, freshness and size; raises :class:`RecordError`."""
        if not self.peer_id.verify(self.signature, _SIGN_DOMAIN + self.body):
            raise RecordError("bad record signature")
        # The body is what was signed; the fields must be exactly what it says (a decoded
        # record was built from it; any other one is checked).
        if not self._from_body and _decode_body(self.body) != (
            self.peer_id,
            self.noise_static_key,
            self.envelope_key,
            self.addrs,
            self.seq,
            self.expires_at,
        ):
            raise RecordError("record fields do not match the signed body")
        if self.expires_at <= now:
            raise RecordError("record expired")
        if self.expires_at > now + MAX_TTL:
            raise RecordError("record expiry too far in the future")
        for text in self.addrs:
            try:
                addr = Multiaddr.parse(text)
            except MultiaddrError as exc:
                raise RecordError(f"bad address in record: {exc}") from None
            if addr.peer_id is not None and addr.peer_id != self.peer_id:
                raise RecordError("address names another PeerId")
        return VerifiedPeerRecord(self)


@dataclass(frozen=True)
class VerifiedPeerRecord:
    """A record whose signature, key binding and expiry were checked at some ``now``."""

    record: PeerRecord

    @property
    def peer_id(self) -> PeerId:
        return self.record.peer_id

    @property
    def noise_static_key(self) -> bytes:
        return self.record.noise_static_key

    @property
    def envelope_key(self) -> bytes:
        return self.record.envelope_key

    @property
    def addrs(self) -> tuple[str, ...]:
        return self.record.addrs

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def expires_at(self) -> int:
        return self.record.expires_at

    def multiaddrs(self) -> list[Multiaddr]:
        return [Multiaddr.parse(a) for a in self.addrs]

    def encode(self) -> bytes:
        return self.record.encode()

    def is_expired(self, now: float) -> bool:
        return self.record.expires_at <= now
