"""The storage contract: records and the :class:`Storage` Protocol both backends implement.

Times are always passed in by the caller (seconds, any monotonic-enough clock the node uses);
storage never reads a clock, so tests and simulations control it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from node.core.errors import StorageError
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr

if TYPE_CHECKING:
    from node.storage.channelstore import ChannelStore
    from node.storage.dhtstore import NodeDhtStore
    from node.storage.mailboxstore import MailboxStore

__all__ = [
    "MAX_META_KEY",
    "MAX_META_VALUE",
    "MAX_PEER_ADDRS",
    "BlockEntry",
    "PeerEntry",
    "Storage",
]

MAX_PEER_ADDRS = 16  # a signed peer record fits one UDP datagram; so does what we keep of it
MAX_META_KEY = 128
MAX_META_VALUE = 64 * 1024


@dataclass(frozen=True)
class PeerEntry:
    """One address book row. ``failures`` counts dial failures since the last success."""

    peer_id: PeerId
    addrs: tuple[Multiaddr, ...]
    last_seen: float | None
    failures: int
    last_failure: float | None
    added: float


@dataclass(frozen=True)
class BlockEntry:
    """One deny-list row: a peer this node refuses and never dials."""

    peer_id: PeerId
    blocked_at: float


class Storage(Protocol):
    """The node database. ``SqliteStorage`` is the real one, ``MemoryStorage`` its twin."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def get_meta(self, key: str) -> bytes | None: ...

    async def set_meta(self, key: str, value: bytes) -> None: ...

    async def upsert_peer(
        self, peer_id: PeerId, addrs: Sequence[Multiaddr], now: float
    ) -> PeerEntry:
        """Add a peer (``added = now``) or replace its address list; counters are kept."""
        ...

    async def mark_seen(self, peer_id: PeerId, now: float) -> PeerEntry | None:
        """A successful contact: ``last_seen = now`` and ``failures = 0``. None if unknown."""
        ...

    async def mark_failure(self, peer_id: PeerId, now: float) -> PeerEntry | None:
        """A failed dial: ``failures += 1``, ``last_failure = now``. None if unknown."""
        ...

    async def get_peer(self, peer_id: PeerId) -> PeerEntry | None: ...

    async def list_peers(self) -> list[PeerEntry]:
        """Every entry, ordered by PeerId bytes (deterministic)."""
        ...

    async def remove_peer(self, peer_id: PeerId) -> bool:
        """Forget a peer; False when it was not there."""
        ...

    async def block_peer(self, peer_id: PeerId, now: float) -> bool:
        """Put a peer on the deny list (``blocked_at = now``) and forget it from the address
        book, in one transaction. False when it was already blocked (its time is kept)."""
        ...

    async def unblock_peer(self, peer_id: PeerId) -> bool:
        """Take a peer off the deny list; False when it was not on it."""
        ...

    async def list_blocked(self) -> list[BlockEntry]:
        """The deny list, ordered by PeerId bytes."""
        ...

    def dht_store(self, clock: Callable[[], float] | None = None) -> NodeDhtStore:
        """A ``dht.persistence.DhtStore`` over this database (pass it to ``DhtService``).

        ``clock`` (unix seconds, default ``time.time``) stamps ``saved_at``. Each call gives a
        new view with its own counters over the same tables.
        """
        ...

    def channel_store(self) -> ChannelStore:
        """The channel tables (group states, messages, outbox...) of this database."""
        ...

    def mailbox_store(self) -> MailboxStore:
        """The mailbox tables (envelopes held for others) of this database."""
        ...


# ---- argument checks shared by both backends, so they reject exactly the same inputs ----


def check_time(now: float) -> float:
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise StorageError(f"time must be a finite number, got {now!r}")
    return float(now)


def check_addrs(peer_id: PeerId, addrs: Sequence[Multiaddr]) -> tuple[Multiaddr, ...]:
    out: list[Multiaddr] = []
    for a in addrs:
        if not isinstance(a, Multiaddr):
            raise StorageError(f"address book entries must be Multiaddr, got {type(a).__name__}")
        if a.peer_id is not None and a.peer_id != peer_id:
            raise StorageError(f"address {a} names another peer than {peer_id}")
        a = a.without_peer_id()  # stored bare: the row's key already says whose it is
        if a not in out:
            out.append(a)
    if len(out) > MAX_PEER_ADDRS:
        raise StorageError(f"too many addresses for one peer ({len(out)} > {MAX_PEER_ADDRS})")
    return tuple(out)


def check_meta(key: str, value: bytes | None = None) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_META_KEY:
        raise StorageError(f"meta key must be a 1..{MAX_META_KEY} character string")
    if value is not None and (not isinstance(value, bytes) or len(value) > MAX_META_VALUE):
        raise StorageError(f"meta value must be bytes of at most {MAX_META_VALUE}")


def check_peer_id(peer_id: PeerId) -> PeerId:
    if not isinstance(peer_id, PeerId):
        raise StorageError(f"expected a PeerId, got {type(peer_id).__name__}")
    return peer_id
