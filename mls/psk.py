"""psk_secret (RFC 9420 section 8.4): chain every PSK of a commit/Welcome into one secret.

Each PSK is identified by its encoded ``PreSharedKeyID``. The typed struct lives with the wire
structs; anything with ``to_bytes() -> bytes`` (as ``mls.messages`` structs have) or the raw
encoding is accepted here, and two small encoders cover the cases that need no struct.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mls.codec import Writer
from mls.crypto.labels import expand_with_label
from mls.crypto.suite import CipherSuite
from mls.errors import MlsError

__all__ = [
    "PSK_EXTERNAL",
    "PSK_RESUMPTION",
    "RESUMPTION_APPLICATION",
    "RESUMPTION_BRANCH",
    "RESUMPTION_REINIT",
    "SupportsToBytes",
    "encode_external_psk_id",
    "encode_resumption_psk_id",
    "psk_label",
    "psk_secret",
]

PSK_EXTERNAL = 1
PSK_RESUMPTION = 2
RESUMPTION_APPLICATION = 1
RESUMPTION_REINIT = 2
RESUMPTION_BRANCH = 3


class SupportsToBytes(Protocol):
    def to_bytes(self) -> bytes: ...


def encode_external_psk_id(psk_id: bytes, psk_nonce: bytes) -> bytes:
    return Writer().uint8(PSK_EXTERNAL).opaque(psk_id).opaque(psk_nonce).getvalue()


def encode_resumption_psk_id(usage: int, group_id: bytes, epoch: int, psk_nonce: bytes) -> bytes:
    w = Writer().uint8(PSK_RESUMPTION).uint8(usage).opaque(group_id).uint64(epoch)
    return w.opaque(psk_nonce).getvalue()


def psk_label(psk_id: bytes | SupportsToBytes, index: int, count: int) -> bytes:
    """Encoded ``PSKLabel { PreSharedKeyID id; uint16 index; uint16 count; }``."""
    raw = psk_id if isinstance(psk_id, bytes) else psk_id.to_bytes()
    return Writer().raw(raw).uint16(index).uint16(count).getvalue()


def psk_secret(suite: CipherSuite, psks: Sequence[tuple[bytes | SupportsToBytes, bytes]]) -> bytes:
    """``psks`` is the ordered list of (PreSharedKeyID, psk value); empty gives all zeros."""
    count = len(psks)
    if count > 0xFFFF:
        raise MlsError("too many PSKs")
    zero = bytes(suite.nh)
    secret = zero
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.kdf_extract(zero, psk)
        psk_input = expand_with_label(
            suite, extracted, "derived psk", psk_label(psk_id, index, count), suite.nh
        )
        secret = suite.kdf_extract(psk_input, secret)
    return secret
