"""Real nodes behind their admin API, for the channel route, event and CLI tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from api.server import create_app
from node.metrics import node_registry
from tests.harness import Running, StartNode, wait_for

TOKEN = "c" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"
Client = TestClient[web.Request, web.Application]
ApiFor = Callable[..., Awaitable[Client]]


async def api_clients() -> AsyncIterator[ApiFor]:
    """``await make(running, **create_app_options)``: a test client for that node's API
    (the ``api_for`` fixture of tests/api/conftest.py)."""
    clients: list[Client] = []

    async def make(running: Running, **options: Any) -> Client:
        app = create_app(running.node, TOKEN, node_registry(running.node), **options)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def mesh(start_node: StartNode, n: int, **overrides: object) -> list[Running]:
    """``n`` nodes on 127.0.0.1.. bootstrapped through the first, all DHT-ready."""
    boot = await start_node(host="127.0.0.1", **overrides)
    nodes = [boot]
    for i in range(1, n):
        nodes.append(
            await start_node(host=f"127.0.0.{i + 1}", bootstrap=(boot.addr,), **overrides)
        )
    await wait_for(lambda: all(r.node.is_ready() for r in nodes), timeout=20)
    return nodes


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll an async condition (through the API) until it holds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def problem(resp: ClientResponse, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; its body."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body = await resp.json(content_type=PROBLEM)
    assert body["status"] == status and isinstance(body["title"], str)
    assert isinstance(body["type"], str)
    return dict(body)


async def ok(resp: ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    if resp.content_length == 0:
        return None
    assert resp.content_type == "application/json"
    return await resp.json()


class Api:
    """The channel routes of one node, as a test drives them (raw responses)."""

    def __init__(self, client: Client) -> None:
        self.c = client

    async def post(self, path: str, body: Any = None) -> ClientResponse:
        data = None if body is None else json.dumps(body)
        return await self.c.post(path, data=data, headers=AUTH)

    async def get(self, path: str) -> ClientResponse:
        return await self.c.get(path, headers=AUTH)

    async def delete(self, path: str) -> ClientResponse:
        return await self.c.delete(path, headers=AUTH)

    async def create(self, name: str) -> str:
        body = await ok(await self.post("/v1/channels", {"name": name}), 201)
        return str(body["channel_id"])

    async def channel(self, cid: str) -> dict[str, Any]:
        return dict(await ok(await self.get(f"/v1/channels/{cid}")))

    async def invite(self, cid: str, peer: object) -> str:
        resp = await self.post(f"/v1/channels/{cid}/members", {"peer_id": str(peer)})
        return str((await ok(resp, 202))["invite_id"])

    async def invites(self) -> list[dict[str, Any]]:
        return list((await ok(await self.get("/v1/invites")))["invites"])

    async def send(self, cid: str, text: str) -> str:
        resp = await self.post(f"/v1/channels/{cid}/messages", {"text": text})
        return str((await ok(resp, 202))["message_id"])

    async def messages(self, cid: str, query: str = "") -> dict[str, Any]:
        return dict(await ok(await self.get(f"/v1/channels/{cid}/messages{query}")))

    async def has_channel(self, cid: str) -> bool:
        return (await self.get(f"/v1/channels/{cid}")).status == 200

    async def member_count(self, cid: str) -> int:
        return len((await self.channel(cid))["members"])


async def joined(inviter: Api, invitee: Api, cid: str, peer: object) -> None:
    """``inviter`` invites ``peer`` (the node behind ``invitee``), which accepts; both see it."""
    before = await inviter.member_count(cid)
    invite_id = await inviter.invite(cid, peer)

    async def arrived() -> bool:
        return any(i["invite_id"] == invite_id for i in await invitee.invites())

    await eventually(arrived)
    body = await ok(await invitee.post(f"/v1/invites/{invite_id}/accept"), 202)
    assert body == {"channel_id": cid}
    await eventually(lambda: invitee.has_channel(cid))

    async def added() -> bool:
        return await inviter.member_count(cid) == before + 1

    await eventually(added)
