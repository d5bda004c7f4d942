"""The relay adapter (node/relay_service.py) on real in-process nodes."""

from __future__ import annotations

from node.core.identity import Identity
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


async def test_high_jitter_relays_hold_each_frame_then_forward_it(start_node: StartNode) -> None:
    ia, ib = Identity.generate(), Identity.generate()
    relay_node = await start_node(host="127.0.0.1", jitter="high")
    a = await start_node(host="127.0.0.2", identity=ia, bootstrap=(relay_node.addr,),
                         blocked_peers=(ib.peer_id,))
    b = await start_node(host="127.0.0.3", identity=ib, bootstrap=(relay_node.addr,),
                         blocked_peers=(ia.peer_id,))
    relay, ra, rb = relay_node.node.relay, a.node.relay, b.node.relay
    assert relay is not None and ra is not None and rb is not None
    assert relay.hop_delay is not None and ra.hop_delay is None
    await wait_for(lambda: relay_node.node.peer_id in a.peers() & b.peers(), timeout=20)
    await wait_for(lambda: relay_node.node.peer_id in ra.router.mesh(0)
                   and relay_node.node.peer_id in rb.router.mesh(0), timeout=20)
    envelope = b"\x01" + bytes(range(256)) + bytes(255)  # 512 bytes
    assert ra.publish(envelope, stem=False)
    await wait_for(lambda: rb.router.statistics().get("received", 0) >= 1, timeout=20)
    stats = relay.statistics()
    assert stats["hop_delay_held"] >= 1 and stats["hop_delay_held_now"] == 0
