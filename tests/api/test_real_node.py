"""The admin API in front of real in-process nodes (no stand-ins): dial, list, resolve, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.server import create_app
from node.metrics import node_registry
from tests.harness import Running, StartNode, wait_for

TOKEN = "t" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def api_for() -> AsyncIterator[object]:
    clients: list[Client] = []

    async def make(running: Running) -> Client:
        app = create_app(running.node, TOKEN, node_registry(running.node))
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def test_dial_list_resolve_and_metrics_through_the_api(
    start_node: StartNode, api_for: object
) -> None:
    a = await start_node(host="127.0.0.1")
    b = await start_node(host="127.0.0.2", bootstrap=(a.addr,))
    api_a = await api_for(a)  # type: ignore[operator]
    api_b = await api_for(b)  # type: ignore[operator]

    resp = await api_a.get("/readyz")
    assert resp.status == 200
    node = await (await api_a.get("/v1/node", headers=AUTH)).json()
    assert node["peer_id"] == str(a.node.peer_id) and node["addrs"] == [str(a.addr)]

    # b bootstraps through a and meshes with it by itself; a sees it in its peer list.
    await wait_for(lambda: b.node.peer_id in a.peers(), timeout=10)
    peers = (await (await api_a.get("/v1/peers", headers=AUTH)).json())["peers"]
    assert [p["peer_id"] for p in peers] == [str(b.node.peer_id)]

    # The signed record resolves through the API.
    resp = await api_b.get(f"/v1/dht/peers/{a.node.peer_id}", headers=AUTH)
    record = await resp.json()
    assert resp.status == 200 and record["peer_id"] == str(a.node.peer_id)
    assert record["addrs"] == [str(a.addr.without_peer_id())]

    # A failed dial is a 502 problem with the reason; a bad address is a 400.
    resp = await api_a.post("/v1/peers", json={"addr": "/ip4/127.0.0.1/tcp/1"}, headers=AUTH)
    assert resp.status == 502 and resp.content_type == "application/problem+json"
    resp = await api_a.post("/v1/peers", json={"addr": "/ip4/nope/tcp/1"}, headers=AUTH)
    assert resp.status == 400

    metrics = await (await api_a.get("/metrics", headers=AUTH)).text()
    # One link, dialled by whichever node's mesh got there first.
    links = {line for line in metrics.splitlines() if line.startswith("spacepanda_connections{")}
    assert links in (
        {'spacepanda_connections{direction="inbound"} 1.0',
         'spacepanda_connections{direction="outbound"} 0.0'},
        {'spacepanda_connections{direction="inbound"} 0.0',
         'spacepanda_connections{direction="outbound"} 1.0'},
    ), links
    dht = await (await api_a.get("/v1/dht", headers=AUTH)).json()
    assert dht["peer_id"] == str(a.node.peer_id) and dht["ready"] is True

    # DELETE disconnects and forgets.
    resp = await api_a.delete(f"/v1/peers/{b.node.peer_id}", headers=AUTH)
    assert resp.status == 204
    assert await a.node.storage.get_peer(b.node.peer_id) is None
