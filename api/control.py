"""What the admin API needs from a running node: the :class:`NodeControl` Protocol.

Defined here, beside its only consumer (``api.server``), so the API can be tested against a small
in-memory implementation and the real ``node.daemon.Node`` just has to fit the shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from dht.records import VerifiedPeerRecord
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr

__all__ = ["Direction", "NodeControl", "NodeInfo", "PeerInfo", "record_json"]

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True)
class NodeInfo:
    """``GET /v1/node``. ``addrs`` are the listen multiaddrs, each ending in ``/p2p/<peer_id>``."""

    peer_id: str
    addrs: list[str]
    version: str
    uptime_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PeerInfo:
    """One live connection, as ``GET /v1/peers`` lists it.

    ``connected_since`` is a Unix timestamp (seconds). ``rtt_ms`` is the last keepalive round
    trip, ``None`` until one was measured. Byte counters are application bytes on this link.
    """

    peer_id: str
    addr: str
    direction: Direction
    connected_since: float
    rtt_ms: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def record_json(record: VerifiedPeerRecord) -> dict[str, Any]:
    """A verified peer record as ``GET /v1/dht/peers/{peer_id}`` returns it.

    Keys as hex; ``expires_at`` in Unix seconds; ``signed_record`` is the record's canonical
    CBOR encoding (hex), so a client can check the signature itself.
    """
    return {
        "peer_id": str(record.peer_id),
        "addrs": list(record.addrs),
        "noise_static_key": record.noise_static_key.hex(),
        "envelope_key": record.envelope_key.hex(),
        "seq": record.seq,
        "expires_at": record.expires_at,
        "signed_record": record.encode().hex(),
    }


@runtime_checkable
class NodeControl(Protocol):
    """Implemented by ``node.daemon.Node``; consumed by ``api.server.create_app``.

    Errors from :meth:`dial` are mapped to HTTP statuses by ``api.problems`` only:
    ``DialTimeout`` -> 504; ``DialError``, ``HandshakeError``, ``PeerIdMismatch`` -> 502;
    ``LimitExceeded`` -> 503. From :meth:`resolve` and :meth:`dht_statistics`: ``DhtError``
    -> 503 (e.g. the DHT is not running); a lookup longer than the API's resolve timeout -> 504.
    """

    def node_info(self) -> NodeInfo: ...

    def peer_list(self) -> list[PeerInfo]: ...

    def is_ready(self) -> bool: ...

    async def dial(self, addr: Multiaddr) -> PeerInfo: ...

    async def disconnect(self, peer_id: PeerId) -> bool:
        """Close the connection to ``peer_id`` and forget it from the address book.

        False when it was neither connected nor in the address book (-> 404).
        """
        ...

    def dht_statistics(self) -> dict[str, Any]:
        """``GET /v1/dht``: a JSON-serialisable snapshot, shaped like
        ``dht.DhtService.statistics()`` (``node_id``, ``peer_id``, ``ready``, ``buckets``,
        ``contacts``, ``records``, ``lookups``, ``drops``...)."""
        ...

    async def resolve(self, peer_id: PeerId) -> dict[str, Any] | None:
        """``GET /v1/dht/peers/{peer_id}``: the verified record as :func:`record_json` gives
        it, or None when no valid record was found (-> 404)."""
        ...
