"""An in-memory NodeControl and an API client fixture (the real Node is tested by the lead)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from api.control import NodeInfo, PeerInfo
from api.server import create_app
from node.errors import DialError, DialTimeout, HandshakeError, LimitExceeded, PeerIdMismatch
from node.identity import Identity, PeerId
from node.multiaddr import Multiaddr

TOKEN = "test-token-0123456789abcdef0123456789abcdef"


@dataclass
class FakeNode:
    """Dials succeed to port < 9000; ports 9001..9005 fail in specific ways; 9999 explodes."""

    ready: bool = True
    identity: Identity = field(default_factory=Identity.generate)
    peers: dict[str, PeerInfo] = field(default_factory=dict)
    dialled: list[Multiaddr] = field(default_factory=list)

    def node_info(self) -> NodeInfo:
        addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{self.identity.peer_id}"
        return NodeInfo(str(self.identity.peer_id), [addr], "0.1.0-test", 12.5)

    def peer_list(self) -> list[PeerInfo]:
        return list(self.peers.values())

    def is_ready(self) -> bool:
        return self.ready

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

    async def disconnect(self, peer_id: PeerId) -> bool:
        return self.peers.pop(str(peer_id), None) is not None


@pytest.fixture
def fake() -> FakeNode:
    return FakeNode()


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("spacepanda_test_events", "a test counter", registry=reg).inc(3)
    return reg


@pytest.fixture
async def client(fake: FakeNode, registry: CollectorRegistry) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(fake, TOKEN, registry))) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}
