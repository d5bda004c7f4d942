"""The channel routes in front of real in-process nodes (DHT, transport, channel service)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.openapi import RECORD_NOT_FOUND, build_spec
from node.config import NodeConfig
from node.core.identity import Identity
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.daemon import Node
from node.storage.memory import MemoryStorage
from tests.api.channel_harness import (
    AUTH,
    Api,
    ApiFor,
    eventually,
    joined,
    mesh,
    ok,
    problem,
)
from tests.api.test_openapi import _conforms
from tests.harness import StartNode

_SCHEMAS = build_spec()["components"]["schemas"]


def _fits(body: Any, schema: str) -> None:
    assert _conforms(body, _SCHEMAS[schema]) == [], body


async def test_channel_lifecycle(start_node: StartNode, api_for: ApiFor) -> None:
    a, b, c = await mesh(start_node, 3)
    api_a, api_b, api_c = [Api(await api_for(r)) for r in (a, b, c)]

    resp = await api_a.post("/v1/channels", {"name": "général"})
    created = await ok(resp, 201)
    _fits(created, "ChannelCreated")
    cid = created["channel_id"]
    assert resp.headers["Location"] == f"/v1/channels/{cid}"
    assert created["name"] == "général" and created["epoch"] == 0
    assert created["members"] == [
        {"peer_id": str(a.node.peer_id), "display_name": "", "role": "admin"}
    ]
    listed = await ok(await api_a.get("/v1/channels"))
    _fits(listed, "ChannelList")
    assert [ch["channel_id"] for ch in listed["channels"]] == [cid]
    view = await api_a.channel(cid)
    _fits(view, "Channel")
    assert view["status"] == "active" and view["dropped"] == {}

    # b accepts, c declines (a second answer to that invite is a 404).
    await joined(api_a, api_b, cid, b.node.peer_id)
    invite_c = await api_a.invite(cid, c.node.peer_id)
    await eventually(lambda: _has_invite(api_c, invite_c))
    invites = await ok(await api_c.get("/v1/invites"))
    _fits(invites, "InviteList")
    assert invites["invites"][0]["from"] == str(a.node.peer_id)
    assert invites["invites"][0]["name"] == "général"
    assert (await api_c.delete(f"/v1/invites/{invite_c}")).status == 204
    for again in (api_c.delete(f"/v1/invites/{invite_c}"),
                  api_c.post(f"/v1/invites/{invite_c}/accept")):
        body = await problem(await again, 404)
        assert body["type"].endswith("unknown-invite")
    assert await api_c.invites() == []

    # Both members see the same epoch; their API views agree.
    va, vb = await api_a.channel(cid), await api_b.channel(cid)
    assert (va["epoch"], va["epoch_fingerprint"]) == (vb["epoch"], vb["epoch_fingerprint"])
    roles = {m["peer_id"]: m["role"] for m in vb["members"]}
    assert roles == {str(a.node.peer_id): "admin", str(b.node.peer_id): "member"}

    # Messages, both ways, paged by cursor.
    sent = await api_a.send(cid, "hello from a")
    await api_b.send(cid, "hello from b")

    async def both_have_two() -> bool:
        pages = [await api.messages(cid) for api in (api_a, api_b)]
        return all(len(p["messages"]) == 2 for p in pages)

    await eventually(both_have_two)
    everything = await api_b.messages(cid)
    _fits(everything, "MessagePage")
    by_text = {m["text"]: m for m in everything["messages"]}
    assert by_text["hello from a"]["message_id"] == sent
    assert by_text["hello from a"]["sender"] == str(a.node.peer_id)
    assert by_text["hello from a"]["sent_at"] <= by_text["hello from a"]["received_at"] + 5
    first = await api_b.messages(cid, "?limit=1")
    assert len(first["messages"]) == 1 and first["next"] != "0"
    second = await api_b.messages(cid, f"?after={first['next']}&limit=1")
    assert first["messages"] + second["messages"] == everything["messages"]
    # Nothing new: next echoes after, so a client can poll with it.
    empty = await api_b.messages(cid, f"?after={second['next']}")
    assert empty == {"messages": [], "next": second["next"]}
    assert (await api_b.messages(cid))["next"] == everything["next"] == second["next"]
    assert (await api_b.messages(cid, "?after=0&limit=1000")) == everything

    # The profile is announced in the channel.
    resp = await api_b.c.put("/v1/profile", json={"display_name": "bob"}, headers=AUTH)
    assert await ok(resp) == {"display_name": "bob"}

    async def a_sees_bob() -> bool:
        names = {m["peer_id"]: m["display_name"] for m in (await api_a.channel(cid))["members"]}
        return names[str(b.node.peer_id)] == "bob"

    await eventually(a_sees_bob)

    # Admin rights: b may not invite or remove; a, the last admin, may not leave.
    body = await problem(
        await api_b.post(f"/v1/channels/{cid}/members", {"peer_id": str(c.node.peer_id)}), 403
    )
    assert body["type"].endswith("not-admin")
    await problem(await api_b.delete(f"/v1/channels/{cid}/members/{a.node.peer_id}"), 403)
    await problem(
        await api_b.post(f"/v1/channels/{cid}/admins", {"peer_id": str(b.node.peer_id)}), 403
    )
    body = await problem(await api_a.post(f"/v1/channels/{cid}/leave"), 409)
    assert body["type"].endswith("last-admin") and "admin first" in body["detail"]
    # ...nor remove itself, which is the same thing.
    body = await problem(await api_a.delete(f"/v1/channels/{cid}/members/{a.node.peer_id}"), 409)
    assert "admin first" in body["detail"]

    # a makes b an admin, then removes it; b can no longer send.
    resp = await api_a.post(f"/v1/channels/{cid}/admins", {"peer_id": str(b.node.peer_id)})
    assert resp.status == 202

    async def b_is_admin() -> bool:
        members = (await api_a.channel(cid))["members"]
        return {m["peer_id"]: m["role"] for m in members}[str(b.node.peer_id)] == "admin"

    await eventually(b_is_admin)
    resp = await api_a.delete(f"/v1/channels/{cid}/members/{b.node.peer_id}")
    assert resp.status == 202

    async def b_removed() -> bool:
        return (await api_b.channel(cid))["status"] == "removed"

    await eventually(b_removed)
    body = await problem(await api_b.post(f"/v1/channels/{cid}/messages", {"text": "hi?"}), 409)
    assert body["type"].endswith("not-member")
    # Its history stays readable.
    assert len((await api_b.messages(cid))["messages"]) == 2

    # a, alone again, leaves.
    await eventually(lambda: _member_count_is(api_a, cid, 1))
    assert (await api_a.post(f"/v1/channels/{cid}/leave", {})).status == 202
    assert (await api_a.channel(cid))["status"] == "removed"


async def _has_invite(api: Api, invite_id: str) -> bool:
    return any(i["invite_id"] == invite_id for i in await api.invites())


async def _member_count_is(api: Api, cid: str, n: int) -> bool:
    return await api.member_count(cid) == n


# ---- errors -------------------------------------------------------------------------------

_UNKNOWN = "ab" * 32


async def test_request_errors(start_node: StartNode, api_for: ApiFor) -> None:
    a, b = await mesh(start_node, 2)
    api = Api(await api_for(a))
    api_b = Api(await api_for(b))
    cid = await api.create("errors")
    await joined(api, api_b, cid, b.node.peer_id)

    # Bodies: not JSON, not an object, unknown or missing fields, wrong types.
    for path, good in [
        ("/v1/channels", {"name": "x"}),
        (f"/v1/channels/{cid}/members", {"peer_id": str(b.node.peer_id)}),
        (f"/v1/channels/{cid}/admins", {"peer_id": str(b.node.peer_id)}),
        (f"/v1/channels/{cid}/messages", {"text": "x"}),
    ]:
        (field,) = good
        for raw, needle in [
            (b"{nope", "not valid JSON"),
            (b"[1]", "JSON object"),
            (json.dumps({**good, "extra": 1}).encode(), "unknown field(s): extra"),
            (b"{}", f'missing field "{field}"'),
            (json.dumps({field: 5}).encode(), f'field "{field}" must be a string'),
            (json.dumps({field: None}).encode(), "must be a string"),
        ]:
            resp = await api.c.post(path, data=raw, headers=AUTH)
            assert needle in (await problem(resp, 400))["detail"], (path, raw)
    resp = await api.c.put("/v1/profile", json={"display_name": 1}, headers=AUTH)
    await problem(resp, 400)
    resp = await api.c.put("/v1/profile", json={"name": "x"}, headers=AUTH)
    await problem(resp, 400)

    # Names: 1..128 UTF-8 bytes; display names up to 64; lone surrogates are not UTF-8.
    for name in ["", "x" * 129, "é" * 65]:
        body = await problem(await api.post("/v1/channels", {"name": name}), 400)
        assert "1..128 UTF-8 bytes" in body["detail"]
    assert (await api.post("/v1/channels", {"name": "é" * 64})).status == 201
    body = await problem(await api.c.post("/v1/channels", data=b'{"name": "\\ud800"}',
                                          headers=AUTH), 400)
    assert "UTF-8" in body["detail"]
    resp = await api.c.put("/v1/profile", json={"display_name": "x" * 65}, headers=AUTH)
    assert "0..64" in (await problem(resp, 400))["detail"]

    # Ids in paths.
    for path in ["/v1/channels/xyz", f"/v1/channels/{cid.upper()}", f"/v1/channels/{cid}00"]:
        assert "channel id" in (await problem(await api.get(path), 400))["detail"]
    await problem(await api.post("/v1/invites/nothex/accept"), 400)
    await problem(await api.delete("/v1/invites/" + "ab" * 17), 400)
    body = await problem(await api.delete(f"/v1/channels/{cid}/members/not-a-peer"), 400)
    assert body["detail"].startswith("invalid peer id")
    body = await problem(await api.post(f"/v1/channels/{cid}/members", {"peer_id": "sp"}), 400)
    assert body["type"] == "about:blank" and "invalid peer id" in body["detail"]

    # Unknown channel or invite: 404 on every route.
    stranger = Identity.generate().peer_id
    for resp in [
        await api.get(f"/v1/channels/{_UNKNOWN}"),
        await api.post(f"/v1/channels/{_UNKNOWN}/members", {"peer_id": str(stranger)}),
        await api.delete(f"/v1/channels/{_UNKNOWN}/members/{stranger}"),
        await api.post(f"/v1/channels/{_UNKNOWN}/admins", {"peer_id": str(stranger)}),
        await api.post(f"/v1/channels/{_UNKNOWN}/leave"),
        await api.post(f"/v1/channels/{_UNKNOWN}/messages", {"text": "x"}),
        await api.get(f"/v1/channels/{_UNKNOWN}/messages"),
    ]:
        assert (await problem(resp, 404))["type"].endswith("unknown-channel")
    for resp in [
        await api.post(f"/v1/invites/{'cd' * 16}/accept"),
        await api.delete(f"/v1/invites/{'cd' * 16}"),
    ]:
        assert (await problem(resp, 404))["type"].endswith("unknown-invite")
    # A peer that is not a member cannot be removed or promoted.
    await problem(await api.delete(f"/v1/channels/{cid}/members/{stranger}"), 404)
    await problem(await api.post(f"/v1/channels/{cid}/admins", {"peer_id": str(stranger)}), 404)

    # Invites: to a member (or ourselves) 409; to a peer without a record 404, typed.
    for member in (a.node.peer_id, b.node.peer_id):
        resp = await api.post(f"/v1/channels/{cid}/members", {"peer_id": str(member)})
        assert (await problem(resp, 409))["type"].endswith("already-member")
    resp = await api.post(f"/v1/channels/{cid}/members", {"peer_id": str(stranger)})
    body = await problem(resp, 404)
    assert body["type"] == RECORD_NOT_FOUND and str(stranger) in body["detail"]
    assert "DHT" in body["detail"]

    # Text size: 64 KiB of UTF-8 is fine, one byte more is 413; so is a body past any limit.
    assert (await api.post(f"/v1/channels/{cid}/messages", {"text": "x" * 65536})).status == 202
    resp = await api.post(f"/v1/channels/{cid}/messages", {"text": "é" * 32768 + "x"})
    assert (await problem(resp, 413))["type"].endswith("text-too-long")
    resp = await api.post(f"/v1/channels/{cid}/messages", {"text": "\u0001" * 80000})
    await problem(resp, 413)
    resp = await api.post("/v1/channels", {"name": "x" * 20000})
    await problem(resp, 413)

    # Paging parameters.
    for query in ["?limit=0", "?limit=1001", "?limit=x", "?after=-1", "?after=1.5",
                  "?after=", "?after=1&after=2", "?before=3", "?after=99999999999999999999"]:
        resp = await api.get(f"/v1/channels/{cid}/messages{query}")
        assert (await problem(resp, 400))["detail"], query
    assert (await api.messages(cid, "?limit=1000"))["messages"]

    # Leave takes no body but {}.
    await problem(await api_b.post(f"/v1/channels/{cid}/leave", {"x": 1}), 400)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/channels", None),
        ("POST", "/v1/channels", {"name": "x"}),
        ("GET", f"/v1/channels/{_UNKNOWN}", None),
        ("POST", f"/v1/channels/{_UNKNOWN}/members", {"peer_id": "PEER"}),
        ("DELETE", f"/v1/channels/{_UNKNOWN}/members/PEER", None),
        ("POST", f"/v1/channels/{_UNKNOWN}/admins", {"peer_id": "PEER"}),
        ("POST", f"/v1/channels/{_UNKNOWN}/leave", None),
        ("POST", f"/v1/channels/{_UNKNOWN}/messages", {"text": "x"}),
        ("GET", f"/v1/channels/{_UNKNOWN}/messages", None),
        ("GET", "/v1/invites", None),
        ("POST", f"/v1/invites/{'cd' * 16}/accept", None),
        ("DELETE", f"/v1/invites/{'cd' * 16}", None),
        ("PUT", "/v1/profile", {"display_name": "x"}),
        ("GET", "/v1/events", None),
    ],
)
async def test_503_until_the_channel_service_runs(
    tmp_path: Any, api_for: ApiFor, method: str, path: str, body: Any
) -> None:
    # A real Node that has not started: its ``channels`` raises as it does while starting.
    addr = Multiaddr.parse("/ip4/127.0.0.1/tcp/1")
    config = NodeConfig(data_dir=tmp_path, listen=addr, api=addr)
    node = Node(config, NodeKeys.derive(Identity.generate()), MemoryStorage())
    peer = str(Identity.generate().peer_id)
    client = await api_for(_NotRunning(node))
    data = None if body is None else json.dumps(body).replace("PEER", peer)
    resp = await client.request(method, path.replace("PEER", peer), data=data, headers=AUTH)
    problem_body = await problem(resp, 503)
    assert problem_body["type"].endswith("channels-unavailable")
    assert problem_body["detail"] == "channels are not running (the node is starting or stopping)"


class _NotRunning:
    """What ``api_for`` needs of a ``Running``: the node."""

    def __init__(self, node: Node) -> None:
        self.node = node
