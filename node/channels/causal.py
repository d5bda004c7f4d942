"""End-to-end reliability without receipts (Scalable Data Sync style; PROTOCOL.md 12.6).

Every Text (and the content-free Sync sent when a channel is quiet) carries, inside the
encryption, the ids of the last two messages its sender had in the channel and a Bloom filter
of the ids it has received recently. So, with no per-message receipts that would link sealed
senders: a member learns which of its messages each other member has (and shows "seen by N"),
resends what some member still lacks after a while, and notices messages it missed.

``Bloom``: 2,048 bits, k = 7 (about 1% false positives at 200 ids); bit positions from
SHA-256(id): seven 16-bit big-endian words of the digest, modulo 2,048.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["BLOOM_BYTES", "RECENT_IDS", "Bloom", "RecentIds", "positions", "recent_after"]

BLOOM_BITS = 2048
BLOOM_BYTES = BLOOM_BITS // 8
BLOOM_K = 7
RECENT_IDS = 200  # how many received ids a member's filter covers


def _positions(item: bytes) -> list[int]:
    digest = hashlib.sha256(item).digest()
    return [int.from_bytes(digest[2 * i : 2 * i + 2], "big") % BLOOM_BITS for i in range(BLOOM_K)]


def positions(item: bytes) -> tuple[int, ...]:
    """The filter bits of ``item`` (cache them for ids checked against many filters)."""
    return tuple(_positions(item))


class Bloom:
    __slots__ = ("_bits",)

    def __init__(self, data: bytes = bytes(BLOOM_BYTES)) -> None:
        if len(data) != BLOOM_BYTES:
            raise ValueError(f"a filter is {BLOOM_BYTES} bytes")
        self._bits = bytearray(data)

    @classmethod
    def of(cls, items: Iterable[bytes]) -> Bloom:
        bloom = cls()
        for item in items:
            bloom.add(item)
        return bloom

    def add(self, item: bytes) -> None:
        for p in _positions(item):
            self._bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, item: bytes) -> bool:
        return self.has(_positions(item))

    def has(self, bits: Iterable[int]) -> bool:
        """Membership by precomputed bit positions (see :func:`positions`)."""
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in bits)

    def to_bytes(self) -> bytes:
        return bytes(self._bits)


def recent_after(recent: list[bytes], item: bytes) -> list[bytes]:
    """``recent`` with ``item`` appended (once), bounded to RECENT_IDS (oldest dropped)."""
    if item in recent:
        return recent
    out = [*recent, item]
    return out[-RECENT_IDS:]


class RecentIds:
    """The last RECENT_IDS message ids (oldest first) and their Bloom filter, kept up to date
    as ids come and go (a counter per bit), so a message's filter costs a copy, not a rebuild.
    """

    __slots__ = ("_bits", "_counts", "_ids", "_set")

    def __init__(self, ids: Iterable[bytes] = ()) -> None:
        self._ids: list[bytes] = []
        self._set: set[bytes] = set()
        self._counts = [0] * BLOOM_BITS
        self._bits = bytearray(BLOOM_BYTES)
        for item in ids:
            self.add(item)

    def add(self, item: bytes) -> None:
        if item in self._set:
            return
        self._ids.append(item)
        self._set.add(item)
        self._count(item, 1)
        if len(self._ids) > RECENT_IDS:
            old = self._ids.pop(0)
            self._set.discard(old)
            self._count(old, -1)

    def _count(self, item: bytes, delta: int) -> None:
        counts, bits = self._counts, self._bits
        for p in _positions(item):
            counts[p] += delta
            if counts[p] == 0:
                bits[p >> 3] &= ~(1 << (p & 7)) & 0xFF
            else:
                bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, item: bytes) -> bool:
        return item in self._set

    @property
    def ids(self) -> list[bytes]:
        return list(self._ids)

    def last(self, n: int) -> tuple[bytes, ...]:
        return tuple(self._ids[-n:]) if n else ()

    def bloom(self) -> bytes:
        return bytes(self._bits)
