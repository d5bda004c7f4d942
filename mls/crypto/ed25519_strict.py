"""Strict acceptance rules for Ed25519 public keys and signatures (RFC 8032 encodings).

``cryptography`` (OpenSSL) verifies RFC 8032 signatures but accepts encodings that let anyone
"own" a key: the identity point ``01 00..00`` with the signature R = identity, S = 0 verifies
for every message, and so do its non-canonical spellings. :class:`Ed25519Scheme` refuses them
before OpenSSL sees them, so a leaf, KeyPackage or GroupInfo signed with such a key never
verifies. The package imports nothing outside itself, so this is a copy of
``node.core.ed25519`` (a test keeps the two identical).

Only the encodings are checked here (no curve arithmetic): a y coordinate below p, no sign bit
on a point whose x is 0 (y = 1 or y = p - 1), not one of the eight points of small order, and
for signatures S < L. Whether a canonical encoding is on the curve at all is left to OpenSSL,
whose verification fails for points off the curve.
"""

from __future__ import annotations

__all__ = ["SMALL_ORDER_POINTS", "L", "P", "is_strict_public_key", "is_strict_signature"]

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
_Y_MASK = (1 << 255) - 1

# The eight points of order 1, 2, 4 and 8, in their canonical encodings (the non-canonical
# spellings of these points are caught by the canonical-encoding check). The same list as
# libsodium's blocklist; tests/node/core/test_ed25519.py derives it independently.
SMALL_ORDER_POINTS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    )
)


def _is_canonical_point(encoding: bytes) -> bool:
    value = int.from_bytes(encoding, "little")
    y = value & _Y_MASK
    if y >= P:
        return False
    # x = 0 exactly when y = 1 or y = -1; then the sign bit ("x is odd") must be clear.
    return not (value >> 255 and y in (1, P - 1))


def is_strict_public_key(key: bytes) -> bool:
    """32 bytes, a canonical encoding, and not a point of small order."""
    return (
        isinstance(key, bytes)
        and len(key) == 32
        and _is_canonical_point(key)
        and key not in SMALL_ORDER_POINTS
    )


def is_strict_signature(signature: bytes) -> bool:
    """64 bytes ``R || S``: R a canonical encoding of a point not of small order, S < L."""
    if not isinstance(signature, bytes) or len(signature) != 64:
        return False
    r = signature[:32]
    if not _is_canonical_point(r) or r in SMALL_ORDER_POINTS:
        return False
    return int.from_bytes(signature[32:], "little") < L
