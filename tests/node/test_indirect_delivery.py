"""Delivery beyond direct links, between real nodes in one process: members that may not
link to each other talk through relays, and outbox items end up in mailboxes."""

from __future__ import annotations

from node.core.identity import PeerId
from tests.harness import Running, StartNode, wait_for
from tests.node.test_channel_service import _mesh, _texts


async def _forbid_link(a: Running, b: Running) -> None:
    await a.node.disconnect(b.node.peer_id, block=True)
    await b.node.disconnect(a.node.peer_id, block=True)


def _linked(a: Running, b: PeerId) -> bool:
    return a.node.connections.get(b) is not None


async def test_members_without_a_link_talk_through_relays(start_node: StartNode) -> None:
    boot, r1, r2, a, b = await _mesh(start_node, 5)
    await _forbid_link(a, b)
    await wait_for(lambda: len(a.peers()) >= 2 and len(b.peers()) >= 2, timeout=20)
    view = await a.node.channels.create("through the mesh")
    cid = bytes.fromhex(view.channel_id)
    await a.node.channels.invite(cid, b.node.peer_id)
    await wait_for(lambda: len(b.node.channels.invites()) == 1, timeout=30)
    await b.node.channels.accept(bytes.fromhex(b.node.channels.invites()[0]["invite_id"]))
    await wait_for(lambda: cid in b.node.channels.manager.channels, timeout=30)
    await a.node.channels.send(cid, "over relays")
    await b.node.channels.send(cid, "and back")
    await wait_for(lambda: sorted(_texts(a, cid)) == sorted(_texts(b, cid))
                   == ["and back", "over relays"], timeout=30)
    assert not _linked(a, b.node.peer_id) and not _linked(b, a.node.peer_id)
    assert a.node.channels.counters["envelopes_indirect"] > 0
    assert b.node.channels.counters["envelopes_indirect"] > 0
    # Neither could reach the other, so the mailboxes took what the outbox held.
    # The invitation settled by the answer, the Welcome by b speaking in the channel.
    await wait_for(lambda: not a.node.channels._outbox, timeout=60)
    assert a.node.channels.counters["outbox_items_stored"] > 0
    for relay in (boot, r1, r2):
        assert cid not in relay.node.channels.manager.channels
