"""``GET /v1/events`` against real nodes: events arrive, keepalives, slow clients, shutdown."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

from aiohttp import ClientResponse

from node.channels.manager import Notice
from tests.api.channel_harness import AUTH, Api, ApiFor, Client, eventually, mesh, ok, problem
from tests.harness import StartNode


class Stream:
    """The client end of an event stream: events in order, comments kept apart."""

    def __init__(self, resp: ClientResponse) -> None:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        self.resp = resp
        self.comments: list[str] = []
        self._events: deque[tuple[str, dict[str, Any]]] = deque()
        self._name, self._data = "", ""

    async def _read(self) -> bool:
        """Read one line; False at the end of the stream."""
        raw = await self.resp.content.readline()
        if not raw:
            return False
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
        elif line.startswith("event: "):
            self._name = line[len("event: "):]
        elif line.startswith("data: "):
            self._data = line[len("data: "):]
        elif line == "" and self._name:
            self._events.append((self._name, json.loads(self._data)))
            self._name, self._data = "", ""
        return True

    async def next(self, timeout: float = 15.0) -> tuple[str, dict[str, Any]] | None:
        """The next event (name, data), or None when the stream ended."""
        async with asyncio.timeout(timeout):
            while not self._events:
                if not await self._read():
                    return None
        return self._events.popleft()

    async def comment(self, text: str, timeout: float = 10.0) -> None:
        """Read until a new comment ``text`` arrives (events meanwhile are kept)."""
        seen = self.comments.count(text)
        async with asyncio.timeout(timeout):
            while self.comments.count(text) == seen:
                assert await self._read(), "stream ended"

    async def until(self, name: str, **fields: Any) -> dict[str, Any]:
        """Skip events until one named ``name`` whose data has ``fields``."""
        while True:
            event = await self.next()
            assert event is not None, f"stream ended before {name} {fields}"
            if event[0] == name and all(event[1].get(k) == v for k, v in fields.items()):
                return event[1]


async def _open(client: Client) -> Stream:
    stream = Stream(await client.get("/v1/events", headers=AUTH))
    # The first comment says the subscription is live (sent right after it was made).
    await stream.comment("subscribed")
    return stream


async def test_invite_member_epoch_and_message_events(
    start_node: StartNode, api_for: ApiFor
) -> None:
    a, b = await mesh(start_node, 2)
    client_a, client_b = await api_for(a), await api_for(b)
    api_a, api_b = Api(client_a), Api(client_b)
    events_a, events_b = await _open(client_a), await _open(client_b)
    cid = await api_a.create("events")

    # A declined invite is reported to the inviter.
    first = await api_a.invite(cid, b.node.peer_id)
    invite = await events_b.until("invite", invite_id=first)
    assert invite == {"invite_id": first, "channel_id": cid, "name": "events",
                      "from": str(a.node.peer_id)}
    assert (await api_b.delete(f"/v1/invites/{first}")).status == 204
    declined = await events_a.until("invite_declined", invite_id=first)
    assert declined == {"invite_id": first, "channel_id": cid, "peer_id": str(b.node.peer_id)}

    # An accepted one: both sides see b added and the new epoch.
    second = await api_a.invite(cid, b.node.peer_id)
    await events_b.until("invite", invite_id=second)
    await ok(await api_b.post(f"/v1/invites/{second}/accept"), 202)
    added = await events_a.until("member_added", peer_id=str(b.node.peer_id))
    assert added["channel_id"] == cid
    epoch = await events_a.until("epoch", channel_id=cid)
    view = await api_a.channel(cid)
    assert (epoch["epoch"], epoch["epoch_fingerprint"]) == (
        view["epoch"], view["epoch_fingerprint"])
    await events_b.until("member_added", channel_id=cid, peer_id=str(b.node.peer_id))

    message_id = await api_a.send(cid, "over the stream\nwith a newline")
    message = await events_b.until("message", message_id=message_id)
    assert message["channel_id"] == cid and message["sender"] == str(a.node.peer_id)
    assert message["text"] == "over the stream\nwith a newline"
    assert isinstance(message["sent_at"], float)

    # Removal reaches the removed member too.
    await ok(await api_a.delete(f"/v1/channels/{cid}/members/{b.node.peer_id}"), 202)
    await events_b.until("member_removed", channel_id=cid, peer_id=str(b.node.peer_id))


async def test_keepalive_comments(start_node: StartNode, api_for: ApiFor) -> None:
    (a,) = await mesh(start_node, 1)
    stream = await _open(await api_for(a, sse_keepalive=0.05))
    await stream.comment("keepalive")
    # Events still arrive, once and in order, between keepalives.
    for i in range(3):
        a.node.channels._publish(Notice("epoch", b"\x03" * 32, {"epoch": i}))
        await stream.comment("keepalive")
    assert [await stream.next() for _ in range(3)] == [
        ("epoch", {"epoch": i, "channel_id": "03" * 32}) for i in range(3)]


async def test_client_that_falls_behind_is_disconnected(
    start_node: StartNode, api_for: ApiFor
) -> None:
    (a,) = await mesh(start_node, 1)
    client = await api_for(a)
    stream = await _open(client)
    svc = a.node.channels
    # More notices than a subscriber's queue holds, published before the stream's task can
    # run: the service drops the queue, and the stream ends instead of lagging for ever.
    for i in range(5000):
        svc._publish(Notice("epoch", b"\x01" * 32, {"epoch": i}))
    # The stream's queue, and the node's own message counter's (node.metrics renews it).
    assert svc.counters["subscribers_dropped"] == 2
    async with asyncio.timeout(10):
        while await stream.next() is not None:
            pass
    assert any("too slow" in c for c in stream.comments)
    # A new stream gets what comes next.
    again = await _open(client)
    svc._publish(Notice("epoch", b"\x02" * 32, {"epoch": 7}))
    assert await again.next() == ("epoch", {"epoch": 7, "channel_id": "02" * 32})


async def test_stream_ends_cleanly_on_shutdown(start_node: StartNode, api_for: ApiFor) -> None:
    (a,) = await mesh(start_node, 1)
    client = await api_for(a)
    stream = await _open(client)
    closing = asyncio.create_task(client.server.close())
    async with asyncio.timeout(5):
        # The chunked response is complete: the reader sees its end, not a broken connection.
        assert await stream.next() is None
        await closing
    assert stream.resp.content.at_eof()


async def test_events_need_the_token(start_node: StartNode, api_for: ApiFor) -> None:
    (a,) = await mesh(start_node, 1)
    await problem(await (await api_for(a)).get("/v1/events"), 401)


async def test_a_client_that_goes_away_is_unsubscribed(
    start_node: StartNode, api_for: ApiFor
) -> None:
    (a,) = await mesh(start_node, 1)
    subscribers = a.node.channels._subscribers
    others = len(subscribers)  # the node's own message counter (node.metrics)
    stream = await _open(await api_for(a, sse_keepalive=0.05))
    assert len(subscribers) == others + 1
    stream.resp.close()  # the next keepalive finds the connection gone

    async def released() -> bool:
        return len(subscribers) == others

    await eventually(released)
