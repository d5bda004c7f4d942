from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import pytest
import structlog.testing
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from api.control import NodeControl
from api.openapi import RECORD_NOT_FOUND
from api.server import MAX_BODY_BYTES, ApiServer, create_app
from dht.errors import DhtError
from node.core.identity import Identity
from node.core.multiaddr import Multiaddr
from tests.api.conftest import AUTH, TOKEN, Client, FakeNode, signed_record

PROBLEM = "application/problem+json"


async def _problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    body = await resp.json(content_type=PROBLEM)
    assert body["status"] == status
    assert isinstance(body["type"], str) and isinstance(body["title"], str)
    return dict(body)


def test_fake_fits_protocol(fake: FakeNode) -> None:
    # Python 3.11's isinstance() on a runtime protocol calls property getters, and
    # ``channels`` raises while channels do not run (as on the real Node): look the members
    # up statically, as Python 3.12's isinstance() does.
    members = [m for m in dir(NodeControl) if not m.startswith("_")]
    assert "channels" in members and "set_display_name" in members
    for name in members:
        assert inspect.getattr_static(fake, name, None) is not None, name


async def test_health_needs_no_auth(client: Client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}


async def test_readyz_503_until_ready(client: Client, fake: FakeNode) -> None:
    fake.ready = False
    body = await _problem(await client.get("/readyz"), 503)
    assert "starting" in body["detail"]
    fake.ready = True
    assert (await client.get("/readyz")).status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/node"),
        ("GET", "/v1/peers"),
        ("POST", "/v1/peers"),
        ("DELETE", "/v1/peers/x"),
        ("GET", "/v1/dht"),
        ("GET", "/v1/dht/peers/x"),
        ("GET", "/v1/network"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
        ("POST", "/v1/channels"),
        ("GET", "/v1/channels/" + "ab" * 32 + "/messages"),
        ("DELETE", "/v1/invites/" + "ab" * 16),
        ("PUT", "/v1/profile"),
        ("GET", "/v1/events"),
    ],
)
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token-wrong-token", "Basic " + TOKEN, "Bearer", TOKEN]
)
async def test_auth_required(client: Client, method: str, path: str, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = await client.request(method, path, headers=headers)
    await _problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_node_info(client: Client, fake: FakeNode) -> None:
    resp = await client.get("/v1/node", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["peer_id"] == str(fake.identity.peer_id)
    assert body["uptime_s"] == 12.5 and body["version"] == "0.1.0-test"
    assert body["addrs"][0].endswith(str(fake.identity.peer_id))


async def test_connect_list_get_disconnect(client: Client, fake: FakeNode) -> None:
    assert await (await client.get("/v1/peers", headers=AUTH)).json() == {"peers": []}
    peer = Identity.generate().peer_id
    addr = f"/ip4/127.0.0.1/tcp/4002/p2p/{peer}"
    resp = await client.post("/v1/peers", json={"addr": addr}, headers=AUTH)
    assert resp.status == 201
    assert resp.headers["Location"] == f"/v1/peers/{peer}"
    info = await resp.json()
    assert info["peer_id"] == str(peer) and info["direction"] == "outbound"
    assert fake.dialled == [Multiaddr.parse(addr)]
    again = await client.post("/v1/peers", json={"addr": addr}, headers=AUTH)
    assert again.status == 200  # already connected

    listed = await (await client.get("/v1/peers", headers=AUTH)).json()
    assert [p["peer_id"] for p in listed["peers"]] == [str(peer)]
    got = await client.get(f"/v1/peers/{peer}", headers=AUTH)
    assert (await got.json())["addr"] == "/ip4/127.0.0.1/tcp/4002"

    resp = await client.delete(f"/v1/peers/{peer}", headers=AUTH)
    assert resp.status == 204
    await _problem(await client.delete(f"/v1/peers/{peer}", headers=AUTH), 404)
    await _problem(await client.get(f"/v1/peers/{peer}", headers=AUTH), 404)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"addr": 5}', "JSON object"),
        (b'{"addr": "/ip4/127.0.0.1/tcp/1", "x": 1}', "unknown field"),
        (b'{"addr": "/ip4/127.0.0.1/udp/1"}', "udp"),
        (b'{"addr": "/ip4/127.0.0.1/tcp/0"}', "port 0"),
    ],
)
async def test_connect_bad_requests(client: Client, body: bytes, needle: str) -> None:
    resp = await client.post("/v1/peers", data=body, headers=AUTH)
    problem = await _problem(resp, 400)
    assert needle in problem["detail"]


@pytest.mark.parametrize(
    ("port", "status", "needle"),
    [
        (9001, 504, "timed out"),
        (9002, 502, "refused"),
        (9003, 502, "signature"),
        (9004, 502, "sp-other"),
        (9005, 503, "max_connections"),
    ],
)
async def test_failed_dials_map_to_gateway_errors(
    client: Client, port: int, status: int, needle: str
) -> None:
    resp = await client.post("/v1/peers", json={"addr": f"/ip4/127.0.0.1/tcp/{port}"}, headers=AUTH)
    problem = await _problem(resp, status)
    assert needle in problem["detail"]
    assert problem["type"].startswith("urn:spacepanda:problem:")


async def test_unexpected_error_is_opaque_500_and_logged(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        resp = await client.post(
            "/v1/peers", json={"addr": "/ip4/127.0.0.1/tcp/9999"}, headers=AUTH
        )
        text = await resp.text()
    assert resp.status == 500 and resp.content_type == PROBLEM
    assert "secret internal detail" not in text and "Traceback" not in text
    failed = [e for e in logs if e["event"] == "api.handler_failed"]
    assert len(failed) == 1 and failed[0]["path"] == "/v1/peers"
    assert failed[0]["exc_info"] is True


async def test_body_size_limit(client: Client) -> None:
    big = json.dumps({"addr": "x" * (MAX_BODY_BYTES + 10)})
    resp = await client.post("/v1/peers", data=big, headers=AUTH)
    await _problem(resp, 413)


@pytest.mark.parametrize("bad", ["nope", "sp" + "a" * 60])
async def test_bad_peer_id_400(client: Client, fake: FakeNode, bad: str) -> None:
    await _problem(await client.delete(f"/v1/peers/{bad}", headers=AUTH), 400)
    await _problem(await client.get(f"/v1/peers/{bad}", headers=AUTH), 400)
    problem = await _problem(await client.get(f"/v1/dht/peers/{bad}", headers=AUTH), 400)
    assert problem["detail"].startswith("invalid peer id")
    assert fake.resolved == []  # refused before reaching the node


async def test_disconnect_404_says_neither_connected_nor_known(client: Client) -> None:
    peer = Identity.generate().peer_id
    problem = await _problem(await client.delete(f"/v1/peers/{peer}", headers=AUTH), 404)
    assert problem["detail"] == f"not connected to {peer} and not in the address book"


# ---- DHT ----------------------------------------------------------------------------------


async def test_dht_statistics_passed_through(client: Client, fake: FakeNode) -> None:
    resp = await client.get("/v1/dht", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.json() == fake.dht_statistics()


async def test_resolve_returns_the_verified_record(client: Client, fake: FakeNode) -> None:
    rec = signed_record()
    fake.records[str(rec.peer_id)] = rec
    resp = await client.get(f"/v1/dht/peers/{rec.peer_id}", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "peer_id": str(rec.peer_id),
        "addrs": list(rec.addrs),
        "noise_static_key": rec.noise_static_key.hex(),
        "envelope_key": rec.envelope_key.hex(),
        "seq": rec.seq,
        "expires_at": rec.expires_at,
        "signed_record": rec.encode().hex(),
    }
    assert fake.resolved == [rec.peer_id]


async def test_resolve_unknown_is_typed_404(client: Client) -> None:
    peer = Identity.generate().peer_id
    problem = await _problem(await client.get(f"/v1/dht/peers/{peer}", headers=AUTH), 404)
    assert problem["type"] == RECORD_NOT_FOUND
    assert str(peer) in problem["detail"]
    # An unknown route's 404 is a different problem type, so clients can tell them apart.
    plain = await _problem(await client.get("/v1/dht/nope", headers=AUTH), 404)
    assert plain["type"] == "about:blank"


async def test_dht_errors_are_503(client: Client, fake: FakeNode) -> None:
    fake.dht_error = DhtError("DHT service not started")
    body = await _problem(await client.get("/v1/dht", headers=AUTH), 503)
    assert body["type"].endswith("dht-unavailable") and "not started" in body["detail"]
    peer = Identity.generate().peer_id
    body = await _problem(await client.get(f"/v1/dht/peers/{peer}", headers=AUTH), 503)
    assert "not started" in body["detail"]


async def test_slow_resolve_is_504(fake: FakeNode) -> None:
    fake.resolve_delay = 5.0
    app = create_app(fake, TOKEN, CollectorRegistry(), resolve_timeout=0.05)
    async with TestClient(TestServer(app)) as c:
        peer = Identity.generate().peer_id
        body = await _problem(await c.get(f"/v1/dht/peers/{peer}", headers=AUTH), 504)
    assert "0.05s" in body["detail"]


async def test_unknown_route_and_method_are_problems(client: Client) -> None:
    await _problem(await client.get("/v2/whatever", headers=AUTH), 404)
    resp = await client.put("/v1/peers", headers=AUTH)
    body = await _problem(resp, 405)
    assert "GET" in resp.headers["Allow"] and "PUT" in body["detail"]
    head = await client.head("/v1/node", headers=AUTH)
    assert head.status == 405 and head.content_type == PROBLEM


async def test_metrics_from_given_registry(client: Client) -> None:
    resp = await client.get("/metrics", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "spacepanda_test_events_total 3.0" in await resp.text()


async def test_api_server_binds_port_zero_and_stops(fake: FakeNode) -> None:
    app = create_app(fake, TOKEN, CollectorRegistry())
    server = ApiServer(app, Multiaddr.parse("/ip4/127.0.0.1/tcp/0", allow_port_zero=True))
    addr = await server.start()
    try:
        assert addr.family == "ip4" and addr.host == "127.0.0.1" and addr.port > 0
        async with ClientSession() as s:
            url = f"http://127.0.0.1:{addr.port}/v1/node"
            async with s.get(url, headers=AUTH) as resp:
                assert resp.status == 200
    finally:
        await server.stop()
    assert server.address is None
    async with ClientSession() as s:
        with pytest.raises(OSError):
            await s.get(f"http://127.0.0.1:{addr.port}/healthz")


_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.builds(lambda a: json.dumps({"addr": a}).encode(), st.text(max_size=120)),
    st.builds(
        lambda port, tail: json.dumps({"addr": f"/ip4/127.0.0.1/tcp/{port}{tail}"}).encode(),
        st.integers(-5, 70000),
        st.sampled_from(["", "/p2p/x", "/p2p", "/tcp/1"]),
    ),
)


@settings(max_examples=60, deadline=None)
@given(body=_bodies)
def test_post_peers_never_500_on_any_body(body: bytes) -> None:
    async def go() -> tuple[int, str]:
        app = create_app(FakeNode(), TOKEN, CollectorRegistry())
        async with TestClient(TestServer(app)) as c:
            resp = await c.post("/v1/peers", data=body, headers=AUTH)
            return resp.status, resp.content_type

    status, ctype = asyncio.run(go())
    assert status in (200, 201, 400, 502, 503, 504)
    if status >= 400:
        assert ctype == PROBLEM
