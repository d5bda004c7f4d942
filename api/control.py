"""What the admin API needs from a running node: the :class:`NodeControl` Protocol.

Defined here, beside its only consumer (``api.server``), so the API can be tested against a small
in-memory implementation and the real ``node.daemon.Node`` just has to fit the shape.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from dht.records import VerifiedPeerRecord
from node.core.identity import PeerId
from node.core.multiaddr import Multiaddr

if TYPE_CHECKING:
    from node.channel_service import ChannelView
    from node.channels.manager import Notice
    from node.storage.channelstore import MessageRow

__all__ = [
    "BlockInfo",
    "ChannelControl",
    "Direction",
    "NodeControl",
    "NodeInfo",
    "PeerInfo",
    "Readiness",
    "record_json",
]

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True)
class NodeInfo:
    """``GET /v1/node``. ``addrs`` are the listen multiaddrs, each ending in ``/p2p/<peer_id>``."""

    peer_id: str
    addrs: list[str]
    version: str
    uptime_s: float
    commit: str = "unknown"

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


@dataclass(frozen=True)
class Readiness:
    """``GET /readyz``: ready or not, why, and the DHT join's state (``bootstrap``: see
    ``node.joinwatch.JoinState``; None before the DHT runs).

    ``state``: "starting", "joining", "ready" or "stopping".
    """

    ready: bool
    state: str
    reason: str
    bootstrap: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not_ready", "state": self.state,
                "reason": self.reason, "bootstrap": self.bootstrap}


@dataclass(frozen=True)
class BlockInfo:
    """One deny-list entry, as ``GET /v1/blocks`` lists it (``blocked_at``: Unix seconds)."""

    peer_id: str
    blocked_at: float

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


class ChannelControl(Protocol):
    """The channel service as the API drives it (``node.channel_service.ChannelService``).

    Ids are raw bytes (channel: 32, invite: 16). Errors from ``node.channels.errors``
    (``UnknownChannel``, ``UnknownInvite``, ``NotAdmin``, ``NotMember``, ``TextTooLong``, any
    other ``ChannelError``) are mapped to statuses by ``api.problems`` only. The ``async``
    methods that change state answer once the change is durable.
    """

    async def create(self, name: str) -> ChannelView: ...

    def view(self, channel_id: bytes) -> ChannelView: ...

    def views(self) -> list[ChannelView]: ...

    async def invite(self, channel_id: bytes, peer: PeerId) -> bytes:
        """Resolve ``peer``'s signed record in the DHT and send it an invite; the invite id.
        ``UnknownChannel`` both for an unknown channel and for an invitee without a record."""
        ...

    async def remove(self, channel_id: bytes, peer: PeerId) -> None: ...

    async def make_admin(self, channel_id: bytes, peer: PeerId) -> None: ...

    async def leave(self, channel_id: bytes) -> None:
        """``NotAdmin`` when this node is the last admin and others remain."""
        ...

    async def send(self, channel_id: bytes, text: str) -> bytes:
        """The new message's id, once it is durably in the outbox."""
        ...

    async def messages(self, channel_id: bytes, after: int, limit: int) -> list[MessageRow]: ...

    def invites(self) -> list[dict[str, str]]:
        """Pending incoming invites: ``invite_id``, ``channel_id``, ``name``, ``from``."""
        ...

    async def accept(self, invite_id: bytes) -> str:
        """The channel id (hex) the accepted invite is for."""
        ...

    async def decline(self, invite_id: bytes) -> None: ...

    def subscribe(self) -> asyncio.Queue[Notice]:
        """A bounded queue of events; the service stops filling (drops) a full one."""
        ...

    def unsubscribe(self, queue: asyncio.Queue[Notice]) -> None: ...


@runtime_checkable
class NodeControl(Protocol):
    """Implemented by ``node.daemon.Node``; consumed by ``api.server.create_app``.

    Errors from :meth:`dial` are mapped to HTTP statuses by ``api.problems`` only:
    ``DialTimeout`` -> 504; ``DialError``, ``HandshakeError``, ``PeerIdMismatch`` -> 502;
    ``LimitExceeded`` -> 503. From :meth:`resolve` and :meth:`dht_statistics`: ``DhtError``
    -> 503 (e.g. the DHT is not running); a lookup longer than the API's resolve timeout -> 504.
    :attr:`channels` raises ``SpacePandaError`` while the channel service is not running
    (the API answers 503).
    """

    def node_info(self) -> NodeInfo: ...

    def peer_list(self) -> list[PeerInfo]: ...

    def is_ready(self) -> bool: ...

    def readiness(self) -> Readiness:
        """``GET /readyz``: :meth:`is_ready` with the reason and the DHT join's state."""
        ...

    async def dial(self, addr: Multiaddr) -> PeerInfo: ...

    async def disconnect(self, peer_id: PeerId, *, block: bool = False) -> bool:
        """Close the connection to ``peer_id`` and forget it from the address book.

        False when it was neither connected nor in the address book (-> 404). With ``block``
        the peer also goes on the persisted deny list (refused inbound, never dialled); always
        True then.
        """
        ...

    async def unblock(self, peer_id: PeerId) -> bool:
        """Take ``peer_id`` off the deny list; False when it was not on it (-> 404)."""
        ...

    async def blocks(self) -> list[BlockInfo]:
        """The deny list (``GET /v1/blocks``), ordered by PeerId bytes."""
        ...

    def dht_statistics(self) -> dict[str, Any]:
        """``GET /v1/dht``: a JSON-serialisable snapshot, shaped like
        ``dht.DhtService.statistics()`` (``node_id``, ``peer_id``, ``ready``, ``buckets``,
        ``contacts``, ``records``, ``lookups``, ``drops``...)."""
        ...

    async def network(self) -> dict[str, Any]:
        """``GET /v1/network``: the relay, the mailboxes and delivery, shaped by
        ``node.netview.network_view``; ``NetworkStopped`` (-> 503) while they do not run."""
        ...

    async def resolve(self, peer_id: PeerId) -> dict[str, Any] | None:
        """``GET /v1/dht/peers/{peer_id}``: the verified record as :func:`record_json` gives
        it, or None when no valid record was found (-> 404)."""
        ...

    @property
    def channels(self) -> ChannelControl:
        """The running channel service; ``SpacePandaError`` until it runs."""
        ...

    async def set_display_name(self, name: str) -> None:
        """``PUT /v1/profile``: remember the name and announce it in every channel."""
        ...
