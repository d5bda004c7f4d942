"""In-memory :class:`~node.storage.base.Storage` twin, for tests and simulations.

Same semantics and the same argument checks as ``SqliteStorage``; the shared test suite holds
both to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from node.core.errors import StorageError
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr
from node.storage.base import (
    BlockEntry,
    PeerEntry,
    check_addrs,
    check_meta,
    check_peer_id,
    check_time,
)
from node.storage.channelstore import MemoryChannelStore
from node.storage.dhtstore import DhtTables, MemoryStorageDhtStore
from node.storage.mailboxstore import MemoryMailboxStore
from node.storage.migrations import LATEST_VERSION

__all__ = ["MemoryStorage"]


class MemoryStorage:
    def __init__(self) -> None:
        self._meta: dict[str, bytes] = {}
        self._peers: dict[PeerId, PeerEntry] = {}
        self._blocked: dict[PeerId, BlockEntry] = {}
        self.dht_tables = DhtTables()
        self._channels = MemoryChannelStore(self._check_open)
        self._mailboxes = MemoryMailboxStore(self._check_open, self._meta)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("storage is closed")

    async def close(self) -> None:
        self._closed = True

    async def schema_version(self) -> int:
        self._check_open()
        return LATEST_VERSION

    async def get_meta(self, key: str) -> bytes | None:
        self._check_open()
        check_meta(key)
        return self._meta.get(key)

    async def set_meta(self, key: str, value: bytes) -> None:
        self._check_open()
        check_meta(key, value)
        self._meta[key] = bytes(value)

    async def upsert_peer(
        self, peer_id: PeerId, addrs: Sequence[Multiaddr], now: float
    ) -> PeerEntry:
        self._check_open()
        t = check_time(now)
        bare = check_addrs(peer_id, addrs)
        old = self._peers.get(peer_id)
        entry = (
            PeerEntry(peer_id, bare, None, 0, None, t) if old is None else replace(old, addrs=bare)
        )
        self._peers[peer_id] = entry
        return entry

    async def mark_seen(self, peer_id: PeerId, now: float) -> PeerEntry | None:
        self._check_open()
        t = check_time(now)
        old = self._peers.get(peer_id)
        if old is None:
            return None
        entry = replace(old, last_seen=t, failures=0)
        self._peers[peer_id] = entry
        return entry

    async def mark_failure(self, peer_id: PeerId, now: float) -> PeerEntry | None:
        self._check_open()
        t = check_time(now)
        old = self._peers.get(peer_id)
        if old is None:
            return None
        entry = replace(old, failures=old.failures + 1, last_failure=t)
        self._peers[peer_id] = entry
        return entry

    async def get_peer(self, peer_id: PeerId) -> PeerEntry | None:
        self._check_open()
        return self._peers.get(peer_id)

    async def list_peers(self) -> list[PeerEntry]:
        self._check_open()
        return [self._peers[p] for p in sorted(self._peers, key=lambda p: p.binary)]

    async def remove_peer(self, peer_id: PeerId) -> bool:
        self._check_open()
        return self._peers.pop(peer_id, None) is not None

    async def block_peer(self, peer_id: PeerId, now: float) -> bool:
        self._check_open()
        t = check_time(now)
        check_peer_id(peer_id)
        self._peers.pop(peer_id, None)
        if peer_id in self._blocked:
            return False
        self._blocked[peer_id] = BlockEntry(peer_id, t)
        return True

    async def unblock_peer(self, peer_id: PeerId) -> bool:
        self._check_open()
        return self._blocked.pop(peer_id, None) is not None

    async def list_blocked(self) -> list[BlockEntry]:
        self._check_open()
        return [self._blocked[p] for p in sorted(self._blocked, key=lambda p: p.binary)]

    def dht_store(self, clock: Callable[[], float] | None = None) -> MemoryStorageDhtStore:
        return MemoryStorageDhtStore(self.dht_tables, self._check_open, clock or time.time)

    def channel_store(self) -> MemoryChannelStore:
        return self._channels

    def mailbox_store(self) -> MemoryMailboxStore:
        return self._mailboxes
