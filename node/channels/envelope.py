"""Sealed envelopes: what leaves a node for a channel or an invitee (PROTOCOL.md section 10).

An envelope shows a version byte, a 16-byte routing tag and ciphertext, padded so that its
whole length is one of a few sizes. No sender, group id, epoch or content type is visible.

Two kinds share the layout and the sizes, so an observer cannot tell them apart:

* channel envelope: ``version || tag || nonce(24) || ChaCha20-Poly1305(k, 0^12, version||tag,
  plaintext)`` with ``k = HMAC-SHA256(envelope_key, "spacepanda/v1/envelope-key" || nonce)``,
  a fresh key per envelope so that a random 192-bit nonce is safe;
  ``tag = HMAC-SHA256(tag_key, "spacepanda/v1/tag" || uint64(hour))[0:16]``.
* invite envelope (to one node, no shared key yet): ``version || tag(random) || enc(32) ||
  HPKE ciphertext``, HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  ChaCha20-Poly1305, ``info = "spacepanda/v1/invite"``, ``aad = version || tag``, to the
  recipient's envelope key from its signed peer record.

``plaintext = uint32(len(payload)) || payload || zeros`` sized so the envelope is 512, 2048,
8192 or 32768 bytes, or above that a Padmé length (the rule is ``node.core.padding``'s; its
names are re-exported here). Pure functions; randomness is injected.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from mls.crypto.hpke import (
    AEAD_CHACHA20POLY1305,
    KDF_HKDF_SHA256,
    KEM_X25519_HKDF_SHA256,
    HpkeSuite,
)
from mls.errors import MlsError
from node.channels.errors import EnvelopeError
from node.core.padding import BUCKETS, MAX_ENVELOPE, envelope_size, is_envelope_size, padme

__all__ = [
    "BUCKETS",
    "MAX_ENVELOPE",
    "MAX_PAYLOAD",
    "TAG_LEN",
    "VERSION",
    "envelope_size",
    "is_envelope_size",
    "open_channel_envelope",
    "open_invite_envelope",
    "padme",
    "routing_tag",
    "seal_channel_envelope",
    "seal_invite_envelope",
    "split",
]

Rng = Callable[[int], bytes]

VERSION = 1
TAG_LEN = 16
NONCE_LEN = 24
ENC_LEN = 32
AEAD_TAG_LEN = 16
_LEN_PREFIX = 4
_HEADER = 1 + TAG_LEN
_CHANNEL_OVERHEAD = _HEADER + NONCE_LEN + AEAD_TAG_LEN + _LEN_PREFIX
_INVITE_OVERHEAD = _HEADER + ENC_LEN + AEAD_TAG_LEN + _LEN_PREFIX
# The largest payload either kind can carry.
MAX_PAYLOAD = MAX_ENVELOPE - max(_CHANNEL_OVERHEAD, _INVITE_OVERHEAD) - MAX_ENVELOPE // 16

_KEY_LABEL = b"spacepanda/v1/envelope-key"
_TAG_LABEL = b"spacepanda/v1/tag"
_INVITE_INFO = b"spacepanda/v1/invite"
_ZERO_NONCE = bytes(12)
_HPKE = HpkeSuite(KEM_X25519_HKDF_SHA256, KDF_HKDF_SHA256, AEAD_CHACHA20POLY1305)


def routing_tag(tag_key: bytes, hour: int) -> bytes:
    """The tag a channel's envelopes carry during ``hour`` (Unix time // 3600)."""
    return hmac.digest(tag_key, _TAG_LABEL + hour.to_bytes(8, "big"), "sha256")[:TAG_LEN]


def _padded(payload: bytes, overhead: int) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"envelope payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    total = envelope_size(len(payload) + overhead)
    body = len(payload).to_bytes(_LEN_PREFIX, "big") + payload
    return body + bytes(total - overhead - len(payload))


def _unpadded(plaintext: bytes) -> bytes:
    n = int.from_bytes(plaintext[:_LEN_PREFIX], "big")
    end = _LEN_PREFIX + n
    if len(plaintext) < _LEN_PREFIX or end > len(plaintext):
        raise EnvelopeError("envelope length prefix exceeds its plaintext")
    if any(plaintext[end:]):
        raise EnvelopeError("envelope padding is not zero")
    return plaintext[_LEN_PREFIX:end]


def split(envelope: bytes) -> tuple[bytes, bytes]:
    """Check the outer shape; return (tag, body). Raises EnvelopeError."""
    if not isinstance(envelope, bytes):
        raise EnvelopeError("envelope must be bytes")
    if not is_envelope_size(len(envelope)):
        raise EnvelopeError(f"{len(envelope)} bytes is not an envelope size")
    if envelope[0] != VERSION:
        raise EnvelopeError(f"unsupported envelope version {envelope[0]}")
    return envelope[1:_HEADER], envelope[_HEADER:]


def _channel_key(envelope_key: bytes, nonce: bytes) -> bytes:
    return hmac.digest(envelope_key, _KEY_LABEL + nonce, "sha256")


def seal_channel_envelope(
    envelope_key: bytes, tag: bytes, payload: bytes, *, rng: Rng = os.urandom
) -> bytes:
    if len(envelope_key) != 32 or len(tag) != TAG_LEN:
        raise ValueError("envelope key must be 32 bytes and the tag 16")
    nonce = rng(NONCE_LEN)
    header = bytes((VERSION,)) + tag
    plaintext = _padded(payload, _CHANNEL_OVERHEAD)
    sealed = ChaCha20Poly1305(_channel_key(envelope_key, nonce)).encrypt(
        _ZERO_NONCE, plaintext, header
    )
    return header + nonce + sealed


def open_channel_envelope(envelope_key: bytes, envelope: bytes) -> bytes:
    """The payload, or EnvelopeError if the key does not open it."""
    _, body = split(envelope)
    nonce, sealed = body[:NONCE_LEN], body[NONCE_LEN:]
    try:
        plaintext = ChaCha20Poly1305(_channel_key(envelope_key, nonce)).decrypt(
            _ZERO_NONCE, sealed, envelope[:_HEADER]
        )
    except InvalidTag:
        raise EnvelopeError("envelope does not open with this key") from None
    return _unpadded(plaintext)


def seal_invite_envelope(
    recipient_key: bytes, payload: bytes, *, rng: Rng = os.urandom
) -> bytes:
    """Seal to a node's X25519 envelope key (HPKE base mode); the tag is random."""
    if len(recipient_key) != 32:
        raise ValueError("recipient envelope key must be 32 bytes")
    header = bytes((VERSION,)) + rng(TAG_LEN)
    plaintext = _padded(payload, _INVITE_OVERHEAD)
    try:
        enc, sealed = _HPKE.seal(recipient_key, _INVITE_INFO, header, plaintext, rng=rng)
    except MlsError as exc:
        # A small-order or otherwise unusable public key from a record.
        raise EnvelopeError(f"cannot seal to that envelope key: {exc}") from None
    return header + enc + sealed


def open_invite_envelope(private_key: bytes, envelope: bytes) -> bytes:
    """The payload, or EnvelopeError if the envelope is not for ``private_key``."""
    _, body = split(envelope)
    enc, sealed = body[:ENC_LEN], body[ENC_LEN:]
    try:
        plaintext = _HPKE.open(enc, private_key, _INVITE_INFO, envelope[:_HEADER], sealed)
    except MlsError:
        raise EnvelopeError("envelope is not sealed to this node") from None
    return _unpadded(plaintext)


def envelope_id(envelope: bytes) -> bytes:
    """What de-duplicates an envelope on the wire: SHA-256 of its bytes, first 20 bytes."""
    return hashlib.sha256(envelope).digest()[:20]
