"""Kademlia DHT for SpacePanda: identity-bound node ids, signed peer records, hardened RPCs.

Built on PyPI ``kademlia`` by subclassing (see ``docs/dht.md``). The node uses
:class:`DhtService`; records are :class:`PeerRecord` / :class:`VerifiedPeerRecord`.
"""

from dht.config import DhtConfig
from dht.errors import DhtError, RecordError
from dht.persistence import ContactSnapshot, DhtStore, MemoryDhtStore
from dht.records import PeerRecord, VerifiedPeerRecord, record_key
from dht.service import Bootstrap, DhtService
from dht.storage import RecordStorage, StorageLimits, StoreResult

__all__ = [
    "Bootstrap",
    "ContactSnapshot",
    "DhtConfig",
    "DhtError",
    "DhtService",
    "DhtStore",
    "MemoryDhtStore",
    "PeerRecord",
    "RecordError",
    "RecordStorage",
    "StorageLimits",
    "StoreResult",
    "VerifiedPeerRecord",
    "record_key",
]
