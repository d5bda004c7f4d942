"""``api.client.ApiClient`` against a live server (the client is synchronous: use a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from api.client import ApiClient, ApiError
from api.openapi import RECORD_NOT_FOUND
from api.server import ApiServer, create_app
from dht.errors import DhtError
from node.core.identity import Identity
from node.core.multiaddr import Multiaddr
from tests.api.conftest import TOKEN, FakeNode, dht_stats, signed_record

_ANY_PORT = Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True)


async def _serve(app: web.Application) -> tuple[ApiServer, ApiClient]:
    server = ApiServer(app, _ANY_PORT)
    addr = await server.start()
    return server, ApiClient(f"http://127.0.0.1:{addr.port}", TOKEN, timeout=10)


@pytest.fixture
async def api(fake: FakeNode) -> AsyncIterator[ApiClient]:
    server, client = await _serve(create_app(fake, TOKEN, CollectorRegistry()))
    try:
        yield client
    finally:
        await server.stop()


async def test_dht(api: ApiClient, fake: FakeNode) -> None:
    assert await asyncio.to_thread(api.dht) == dht_stats(fake.identity.peer_id)


async def test_resolve_found_and_missing(api: ApiClient, fake: FakeNode) -> None:
    rec = signed_record()
    fake.records[str(rec.peer_id)] = rec
    body = await asyncio.to_thread(api.resolve, str(rec.peer_id))
    assert body is not None and body["seq"] == rec.seq and body["addrs"] == list(rec.addrs)
    missing = str(Identity.generate().peer_id)
    assert await asyncio.to_thread(api.resolve, missing) is None


async def test_resolve_errors_are_raised_with_problem_type(api: ApiClient, fake: FakeNode) -> None:
    fake.dht_error = DhtError("DHT service not started")
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(api.resolve, str(Identity.generate().peer_id))
    assert info.value.status == 503 and info.value.type.endswith("dht-unavailable")
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(api.resolve, "not-a-peer-id")
    assert info.value.status == 400 and "invalid peer id" in info.value.detail


async def test_plain_404_is_not_taken_for_a_missing_record() -> None:
    # A node without the route (an older build) answers a plain 404: that is an error.
    server, client = await _serve(web.Application())
    try:
        with pytest.raises(ApiError) as info:
            await asyncio.to_thread(client.resolve, str(Identity.generate().peer_id))
    finally:
        await server.stop()
    assert info.value.status == 404 and info.value.type != RECORD_NOT_FOUND


async def test_event_stream_parsing() -> None:
    async def canned(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b': hello\n\nevent: a\ndata: {"x":\ndata: 1}\n\n')
        await resp.write(b"event: b\r\ndata: {}\r\n\r\n")
        await resp.write(b'data: {"no": "name"}\n\nevent: c\n\n: bye\n\n')
        return resp

    app = web.Application()
    app.router.add_get("/v1/events", canned)
    server, client = await _serve(app)
    try:
        events = await asyncio.to_thread(lambda: list(client.events()))
    finally:
        await server.stop()
    assert events == [("a", {"x": 1}), ("b", {})]


async def test_event_stream_errors_are_raised(api: ApiClient) -> None:
    # The fake node has no channel service: 503 before any stream starts.
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(api.events)
    assert info.value.status == 503 and info.value.type.endswith("channels-unavailable")
    with pytest.raises(ApiError) as info:
        await asyncio.to_thread(api.channels)
    assert info.value.status == 503
