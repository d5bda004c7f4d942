"""The deny list: ``DELETE /v1/peers/{id}?block=true``, ``GET /v1/blocks``,
``DELETE /v1/blocks/{id}`` against real in-process nodes, and what blocking does to links."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.problems import PROBLEM_CONTENT_TYPE
from node.core.identity import Identity, PeerId
from node.core.multiaddr import Multiaddr
from node.storage.memory import MemoryStorage
from tests.api.channel_harness import AUTH, ApiFor, Client
from tests.api.conftest import AUTH as FAKE_AUTH
from tests.api.conftest import Client as FakeClient
from tests.api.conftest import FakeNode
from tests.harness import Running, StartNode, wait_for


async def _blocks(api: Client) -> list[dict[str, Any]]:
    resp = await api.get("/v1/blocks", headers=AUTH)
    assert resp.status == 200
    return list((await resp.json())["blocks"])


def _record_dials(running: Running) -> list[Multiaddr]:
    """Every address the node's connection manager is asked to dial, from now on."""
    conns = running.node.connections
    real = conns.dial
    seen: list[Multiaddr] = []

    async def dial(addr: Multiaddr) -> Any:
        seen.append(addr)
        return await real(addr)

    conns.dial = dial  # type: ignore[method-assign]
    return seen


def _count_mesh_rounds(running: Running) -> Callable[[], int]:
    """How many times the mesh dialer consulted the DHT's peers since now (once per round
    at least)."""
    dht = running.node.dht
    real = dht.known_peers
    calls = [0]

    def known_peers() -> list[PeerId]:
        calls[0] += 1
        return real()

    dht.known_peers = known_peers  # type: ignore[method-assign]
    return lambda: calls[0]


async def test_block_keeps_a_peer_out_both_ways_and_across_restarts(
    start_node: StartNode, api_for: ApiFor
) -> None:
    storage = MemoryStorage()
    identity = Identity.generate()
    a = await start_node(host="127.0.0.1", identity=identity, storage=storage)
    b = await start_node(host="127.0.0.2", bootstrap=(a.addr,))
    c = await start_node(host="127.0.0.3", bootstrap=(a.addr,))
    await wait_for(lambda: a.peers() == {b.node.peer_id, c.node.peer_id}, timeout=20)
    await wait_for(lambda: b.node.peer_id in c.peers(), timeout=20)
    api = await api_for(a)
    bid = b.node.peer_id

    dials = _record_dials(a)
    rounds = _count_mesh_rounds(a)
    resp = await api.delete(f"/v1/peers/{bid}?block=true", headers=AUTH)
    assert resp.status == 204, await resp.text()
    assert [x["peer_id"] for x in await _blocks(api)] == [str(bid)]
    assert await storage.get_peer(bid) is None  # forgotten from the address book

    # b redials a (a is in its address book): refused after the handshake, every time.
    refused = a.node.connections.refused
    await wait_for(lambda: refused["blocked"] >= 2, timeout=30)
    # a's mesh dialer still sees b in the DHT (through c) round after round, and never dials.
    assert bid in a.node.dht.known_peers()
    start = rounds()
    await wait_for(lambda: rounds() >= start + 6, timeout=30)
    assert bid not in a.peers()
    assert [d for d in dials if d.peer_id == bid] == []
    assert a.peers() == {c.node.peer_id}

    # An operator's dial is refused too, with a problem that says why (no socket opened).
    resp = await api.post("/v1/peers", json={"addr": str(b.addr)}, headers=AUTH)
    assert resp.status == 409 and resp.content_type == PROBLEM_CONTENT_TYPE
    body = await resp.json(content_type=PROBLEM_CONTENT_TYPE)
    assert body["type"].endswith("peer-blocked") and str(bid) in body["detail"]
    # So is a dial of b's bare address (no /p2p): refused once b proves who it is.
    resp = await api.post("/v1/peers", json={"addr": str(b.addr.without_peer_id())},
                          headers=AUTH)
    assert resp.status == 409, await resp.text()
    assert bid not in a.peers()

    # Restart a on the same storage: still blocked.
    port = a.addr.port
    await a.shutdown()
    a2 = await start_node(host="127.0.0.1", identity=identity, storage=storage, port=port)
    api2 = await api_for(a2)
    assert [x["peer_id"] for x in await _blocks(api2)] == [str(bid)]
    await wait_for(lambda: a2.node.connections.refused["blocked"] >= 1, timeout=30)
    assert bid not in a2.peers()

    # Unblock: a 404 the second time; the peer can be dialled again.
    resp = await api2.delete(f"/v1/blocks/{bid}", headers=AUTH)
    assert resp.status == 204
    resp = await api2.delete(f"/v1/blocks/{bid}", headers=AUTH)
    assert resp.status == 404
    assert await _blocks(api2) == []
    resp = await api2.post("/v1/peers", json={"addr": str(b.addr)}, headers=AUTH)
    assert resp.status in (200, 201), await resp.text()
    await wait_for(lambda: bid in a2.peers(), timeout=10)


async def test_block_a_peer_never_seen(start_node: StartNode, api_for: ApiFor) -> None:
    a = await start_node()
    api = await api_for(a)
    stranger = Identity.generate().peer_id
    # Without block: 404 (nothing to disconnect or forget). With block: on the list.
    assert (await api.delete(f"/v1/peers/{stranger}", headers=AUTH)).status == 404
    assert (await api.delete(f"/v1/peers/{stranger}?block=true", headers=AUTH)).status == 204
    assert (await api.delete(f"/v1/peers/{stranger}?block=true", headers=AUTH)).status == 204
    blocks = await _blocks(api)
    assert [x["peer_id"] for x in blocks] == [str(stranger)]
    assert isinstance(blocks[0]["blocked_at"], float)
    assert a.node.is_blocked(stranger)


async def test_block_query_is_strict(client: FakeClient, fake: FakeNode) -> None:
    peer = Identity.generate().peer_id
    for query in ("block=yes", "block=1", "block=true&block=true", "blok=true"):
        resp = await client.delete(f"/v1/peers/{peer}?{query}", headers=FAKE_AUTH)
        assert resp.status == 400, query
    assert fake.blocked == {}
    assert (await client.delete(f"/v1/peers/{peer}?block=false", headers=FAKE_AUTH)).status == 404
    assert (await client.delete(f"/v1/peers/{peer}?block=true", headers=FAKE_AUTH)).status == 204
    assert list(fake.blocked) == [str(peer)]
    resp = await client.delete("/v1/blocks/not-a-peer", headers=FAKE_AUTH)
    assert resp.status == 400
    for path in ("/v1/blocks", f"/v1/blocks/{peer}"):
        assert (await client.get(path)).status == 401
