"""An in-memory NodeControl and an API client fixture (the real Node is tested by the lead)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from api.control import BlockInfo, NodeInfo, PeerInfo, Readiness, record_json
from api.server import create_app
from dht.errors import DhtError
from dht.records import PeerRecord, VerifiedPeerRecord
from node.core.errors import (
    DialError,
    DialTimeout,
    HandshakeError,
    LimitExceeded,
    PeerIdMismatch,
    SpacePandaError,
)
from node.core.identity import Identity, PeerId
from node.core.multiaddr import Multiaddr
from node.netview import NetworkStopped
from tests.api.channel_harness import ApiFor, api_clients

Client = TestClient[web.Request, web.Application]


def signed_record(
    identity: Identity | None = None, *, seq: int = 7, addrs: tuple[str, ...] | None = None
) -> VerifiedPeerRecord:
    """A real signed and verified peer record (for resolve responses)."""
    identity = identity or Identity.generate()
    now = time.time()
    record = PeerRecord.create(
        identity,
        noise_static_key=os.urandom(32),
        envelope_key=os.urandom(32),
        addrs=addrs if addrs is not None else ("/ip4/127.0.0.1/tcp/4100", "/ip6/::1/tcp/4100"),
        seq=seq,
        expires_at=int(now) + 3600,
    )
    return record.verify(now)


def dht_stats(peer_id: PeerId) -> dict[str, Any]:
    """Shaped like ``dht.DhtService.statistics()`` (test_openapi checks the real one too)."""
    return {
        "node_id": "ab" * 20,
        "peer_id": str(peer_id),
        "ready": True,
        "buckets": [20, 7, 1],
        "contacts": 28,
        "records": 5,
        "record_bytes": 2560,
        "lookups": {
            "total": 10,
            "found": 8,
            "missed": 2,
            "random_walks": 4,
            "mean_rounds": 2.25,
        },
        "publishes": 3,
        "seq": 1_700_000_000_000,
        "rpc": {"ping_in": 40},
        "routing": {"evicted": 1},
        "drops": {"rate_limited": 2, "bad_msgpack": 3, "store_invalid": 0},
        "service": {"lookups": 10},
    }


TOKEN = "test-token-0123456789abcdef0123456789abcdef"


@dataclass
class FakeNode:
    """Dials succeed to port < 9000; ports 9001..9005 fail in specific ways; 9999 explodes."""

    ready: bool = True
    identity: Identity = field(default_factory=Identity.generate)
    peers: dict[str, PeerInfo] = field(default_factory=dict)
    dialled: list[Multiaddr] = field(default_factory=list)
    # DHT: records by PeerId text; an error to raise from the DHT calls; a resolve delay.
    records: dict[str, VerifiedPeerRecord] = field(default_factory=dict)
    dht_error: DhtError | None = None
    resolve_delay: float = 0.0
    resolved: list[PeerId] = field(default_factory=list)
    blocked: dict[str, float] = field(default_factory=dict)

    def node_info(self) -> NodeInfo:
        addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{self.identity.peer_id}"
        return NodeInfo(str(self.identity.peer_id), [addr], "0.1.0-test", 12.5)

    def peer_list(self) -> list[PeerInfo]:
        return list(self.peers.values())

    def is_ready(self) -> bool:
        return self.ready

    def readiness(self) -> Readiness:
        if self.ready:
            return Readiness(True, "ready", "ready: a bootstrap node", {"state": "joined"})
        return Readiness(False, "starting", "node is starting", None)

    async def dial(self, addr: Multiaddr) -> PeerInfo:
        self.dialled.append(addr)
        failures = {
            9001: DialTimeout(f"dial {addr} timed out after 10s"),
            9002: DialError(f"connection refused by {addr}"),
            9003: HandshakeError("bad handshake signature"),
            9004: PeerIdMismatch("peer proved sp-other"),
            9005: LimitExceeded("max_connections reached"),
        }
        if addr.port in failures:
            raise failures[addr.port]
        if addr.port == 9999:
            raise RuntimeError("secret internal detail")
        peer = addr.peer_id or Identity.generate().peer_id
        info = PeerInfo(str(peer), str(addr.without_peer_id()), "outbound", 1000.0, rtt_ms=0.4)
        self.peers.setdefault(info.peer_id, info)
        return self.peers[info.peer_id]

    async def disconnect(self, peer_id: PeerId, *, block: bool = False) -> bool:
        if block:
            self.blocked.setdefault(str(peer_id), 1_700_000_000.5)
        return self.peers.pop(str(peer_id), None) is not None or block

    async def unblock(self, peer_id: PeerId) -> bool:
        return self.blocked.pop(str(peer_id), None) is not None

    async def blocks(self) -> list[BlockInfo]:
        return [BlockInfo(p, at) for p, at in sorted(self.blocked.items())]

    def dht_statistics(self) -> dict[str, Any]:
        if self.dht_error is not None:
            raise self.dht_error
        return dht_stats(self.identity.peer_id)

    async def network(self) -> dict[str, Any]:
        # The relay and mailboxes run only in a real node (tests/api/test_network.py).
        raise NetworkStopped("the relay and mailboxes are not running")

    async def resolve(self, peer_id: PeerId) -> dict[str, Any] | None:
        self.resolved.append(peer_id)
        if self.dht_error is not None:
            raise self.dht_error
        if self.resolve_delay:
            await asyncio.sleep(self.resolve_delay)
        record = self.records.get(str(peer_id))
        return None if record is None else record_json(record)

    # A node without a channel layer, as the real one is before its channel service runs
    # (the channel routes are tested against real nodes: tests/api/test_channels.py).
    @property
    def channels(self) -> Any:
        raise SpacePandaError("channels are not running yet")

    async def set_display_name(self, name: str) -> None:
        raise SpacePandaError("channels are not running yet")


@pytest.fixture
def fake() -> FakeNode:
    return FakeNode()


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("spacepanda_test_events", "a test counter", registry=reg).inc(3)
    return reg


@pytest.fixture
async def client(fake: FakeNode, registry: CollectorRegistry) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(fake, TOKEN, registry))) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api_for() -> AsyncIterator[ApiFor]:
    """A test client for a real node's API: ``await api_for(running, **create_app_options)``."""
    async for make in api_clients():
        yield make
