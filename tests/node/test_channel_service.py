"""Channels between real nodes in one process (TCP and UDP on 127.0.0.x, in-memory storage)."""

from __future__ import annotations

import pytest

from node.channel_service import ChannelsStopped
from node.channels.errors import NotAdmin, NotMember, TextTooLong, UnknownChannel
from tests.harness import Running, StartNode, wait_for


async def _mesh(start_node: StartNode, n: int, **overrides: object) -> list[Running]:
    boot = await start_node(host="127.0.0.1", **overrides)
    nodes = [boot]
    for i in range(1, n):
        nodes.append(await start_node(host=f"127.0.0.{i + 1}", bootstrap=(boot.addr,),
                                      **overrides))
    await wait_for(lambda: all(r.node.is_ready() for r in nodes), timeout=20)
    return nodes


def _texts(r: Running, cid: bytes) -> list[str]:
    return [m.text for m in r.node.channels._store._messages  # type: ignore[attr-defined]
            if m.channel_id == cid]


async def test_create_invite_accept_send_read(start_node: StartNode) -> None:
    a, b, c = await _mesh(start_node, 3)
    view = await a.node.channels.create("general")
    cid = bytes.fromhex(view.channel_id)
    assert view.members[0].role == "admin" and view.epoch == 0
    await a.node.channels.invite(cid, b.node.peer_id)
    await a.node.channels.invite(cid, c.node.peer_id)
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=10)
    await wait_for(lambda: len(c.node.channels.invites()) == 1, timeout=10)
    (inv_b,) = b.node.channels.invites()
    assert inv_b["name"] == "general" and inv_b["from"] == str(a.node.peer_id)
    await b.node.channels.accept(bytes.fromhex(inv_b["invite_id"]))
    await c.node.channels.decline(bytes.fromhex(c.node.channels.invites()[0]["invite_id"]))
    await wait_for(lambda: cid in b.node.channels.manager.channels, timeout=15)
    await wait_for(lambda: len(a.node.channels.view(cid).members) == 2, timeout=15)
    assert cid not in c.node.channels.manager.channels
    await a.node.channels.send(cid, "hello from a")
    await b.node.channels.send(cid, "hello from b")
    await wait_for(lambda: len(_texts(a, cid)) == 2 and len(_texts(b, cid)) == 2, timeout=10)
    assert sorted(_texts(a, cid)) == sorted(_texts(b, cid)) == ["hello from a", "hello from b"]
    va, vb = a.node.channels.view(cid), b.node.channels.view(cid)
    assert (va.epoch, va.epoch_fingerprint) == (vb.epoch, vb.epoch_fingerprint)


async def test_errors_are_typed(start_node: StartNode) -> None:
    (a, b) = await _mesh(start_node, 2)
    with pytest.raises(UnknownChannel):
        await a.node.channels.send(b"\x00" * 32, "x")
    view = await a.node.channels.create("x")
    cid = bytes.fromhex(view.channel_id)
    with pytest.raises(TextTooLong):
        await a.node.channels.send(cid, "x" * (64 * 1024 + 1))
    await a.node.channels.invite(cid, b.node.peer_id)
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=10)
    await b.node.channels.accept(bytes.fromhex(b.node.channels.invites()[0]["invite_id"]))
    await wait_for(lambda: cid in b.node.channels.manager.channels, timeout=15)
    with pytest.raises(NotAdmin):
        await b.node.channels.remove(cid, a.node.peer_id)
    await a.node.channels.remove(cid, b.node.peer_id)
    await wait_for(lambda: b.node.channels.view(cid).status == "removed", timeout=15)
    with pytest.raises(NotMember):
        await b.node.channels.send(cid, "still here?")


async def test_own_messages_are_events_and_calls_fail_fast_after_stop(
    start_node: StartNode,
) -> None:
    (a,) = await _mesh(start_node, 1)
    svc = a.node.channels
    events = svc.subscribe()
    view = await svc.create("solo")
    cid = bytes.fromhex(view.channel_id)
    message_id = await svc.send(cid, "note to self")
    notice = await events.get()
    assert (notice.kind, notice.data["message_id"], notice.data["text"]) == (
        "message", message_id.hex(), "note to self")
    await a.shutdown()
    with pytest.raises(ChannelsStopped):
        await svc.send(cid, "after the end")
    with pytest.raises(ChannelsStopped):
        a.node.channels  # noqa: B018 (the property raises)


async def test_high_jitter_delivers_in_order_and_sends_cover_that_members_drop(
    start_node: StartNode,
) -> None:
    a, b = await _mesh(start_node, 2, jitter="high")
    view = await a.node.channels.create("quiet hours")
    cid = bytes.fromhex(view.channel_id)
    await a.node.channels.invite(cid, b.node.peer_id)
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=10)
    await b.node.channels.accept(bytes.fromhex(b.node.channels.invites()[0]["invite_id"]))
    await wait_for(lambda: cid in b.node.channels.manager.channels, timeout=15)
    for i in range(3):
        await a.node.channels.send(cid, f"m{i}")
    await wait_for(lambda: len(_texts(b, cid)) == 3, timeout=60)
    assert _texts(b, cid) == ["m0", "m1", "m2"]  # delayed, never reordered
    await wait_for(lambda: a.node.channels.counters["cover_sent"] >= 2, timeout=60)
    await wait_for(lambda: b.node.channels.drops[(cid.hex(), "cover")] >= 1, timeout=30)
    assert len(_texts(b, cid)) == 3  # cover is never a message
