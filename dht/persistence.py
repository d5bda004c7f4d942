"""Where a node keeps its DHT state across restarts (no pickle): a Protocol and a memory store.

The node's SQLite implementation lives with node storage; anything with these four coroutines
works. Records are stored as their encoded bytes and re-verified when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from node.core.identity import PeerId

__all__ = ["ContactSnapshot", "DhtStore", "MemoryDhtStore"]


@dataclass(frozen=True)
class ContactSnapshot:
    """A routing-table entry worth remembering: who, and where its DHT (UDP) endpoint was."""

    peer_id: PeerId
    host: str
    port: int


class DhtStore(Protocol):
    async def save_contacts(self, contacts: list[ContactSnapshot]) -> None: ...

    async def load_contacts(self) -> list[ContactSnapshot]: ...

    async def save_records(self, records: list[bytes]) -> None: ...

    async def load_records(self) -> list[bytes]: ...


class MemoryDhtStore:
    """In-memory :class:`DhtStore` (tests, simulation, nodes without a data dir)."""

    def __init__(self) -> None:
        self.contacts: list[ContactSnapshot] = []
        self.records: list[bytes] = []

    async def save_contacts(self, contacts: list[ContactSnapshot]) -> None:
        self.contacts = list(contacts)

    async def load_contacts(self) -> list[ContactSnapshot]:
        return list(self.contacts)

    async def save_records(self, records: list[bytes]) -> None:
        self.records = list(records)

    async def load_records(self) -> list[bytes]:
        return list(self.records)
