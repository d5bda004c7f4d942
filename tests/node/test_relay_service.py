"""The relay adapter (node/relay_service.py) on real in-process nodes."""

from __future__ import annotations

from node.network.gossip_wire import Graft, Subscribe, encode_frame
from tests.harness import StartNode, wait_for


async def test_frames_read_before_the_link_event_are_not_lost(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    await a.node.dial(b.addr)
    relay = a.node.relay
    assert relay is not None
    peer = b.node.peer_id
    await wait_for(lambda: relay.router.knows(peer))
    # As if b's first frames were read before its LinkUp reached the relay: the router does
    # not know b yet, and b's SUBSCRIBE and GRAFT arrive.
    relay.router.remove_peer(peer, 0.0)
    frame = encode_frame([Subscribe((0,)), Graft(0)])
    await relay._on_frame(peer, frame)
    assert relay.router.knows(peer)
    assert peer in relay.router.mesh(0)
    assert relay.counters["peers_added_on_frame"] == 1
    assert relay.router.statistics().get("unknown_peer", 0) == 0


async def test_frames_from_a_peer_without_a_link_stay_unknown(start_node: StartNode) -> None:
    a = await start_node()
    b = await start_node()
    relay = a.node.relay
    assert relay is not None
    await relay._on_frame(b.node.peer_id, encode_frame([Subscribe((0,))]))
    assert not relay.router.knows(b.node.peer_id)
    assert relay.router.statistics()["unknown_peer"] == 1
