"""Issue 11 item 9: the node does what PROTOCOL.md now says (real sockets on loopback).

* 5.3: unusable ``listen_addrs`` entries are ignored, never fatal; the largest valid payload
  (16 maximal addresses) fits the handshake frame limit.
* 6.3: the receiver of Close(LIMIT_REACHED) backs off before redialling.
* 6.3: one connection per pair: two dials to one PeerId share one connection, so the
  responder never has to choose "the newer" of two from the same initiator.
* 5.1: a node never advertises an unspecified address.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from node.core.identity import Identity
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.transport.connections import ConnectionManager, LinkEvent, LinkUp, TransportSettings
from node.transport.messages import HANDSHAKE_SIGNATURE_DOMAIN, MAX_LISTEN_ADDRS, CloseCode
from tests.hardening.raw import forged_handshake
from tests.harness import StartNode, wait_for

UNUSABLE = [
    "/ip4/1.2.3.4/udp/5", "/ip4/1.2.3.4/tcp/0", "/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001",
    "/ip4/01.2.3.4/tcp/5", "/quic/1", "/ip4/9.9.9.9/tcp/9/p2p/"
    + str(Identity.generate().peer_id), "/ip4/1.2.3.4/tcp/5", "/ip4/1.2.3.4/tcp/5",
]


def _signed(identity: Identity, addrs: list[str]) -> Any:
    def payload(static: bytes) -> dict[str, Any]:
        return {"v": 1, "identity_key": identity.public_key_bytes,
                "signature": identity.sign(HANDSHAKE_SIGNATURE_DOMAIN + static),
                "listen_addrs": addrs}
    return payload


async def _handshake_is_admitted(start_node: StartNode, addrs: list[str]) -> tuple[
        bool, tuple[str, ...]]:
    victim = await start_node(host="127.0.0.60")
    conns = victim.node.connections
    host, port = victim.addr.host_port()
    identity = Identity.generate()
    link = await forged_handshake(host, port, _signed(identity, addrs), source="127.0.0.61")
    try:
        await wait_for(lambda: bool(conns.handshake_failures) or bool(conns.links()), 5.0)
        admitted = conns.get(identity.peer_id)
        return admitted is not None, (
            admitted.session.peer_listen_addrs if admitted is not None else ())
    finally:
        link.close()


async def test_unusable_listen_addrs_do_not_fail_the_handshake(start_node: StartNode) -> None:
    admitted, kept = await _handshake_is_admitted(start_node, UNUSABLE)
    assert admitted
    assert kept == ("/ip4/1.2.3.4/tcp/5",)


async def test_the_largest_valid_payload_fits_the_handshake_frame(
    start_node: StartNode,
) -> None:
    # 16 hostnames of the maximal 253 characters: a message 3 of about 4.6 KB, which the
    # old 4,096-byte handshake frame limit refused.
    longest = [f"/dns4/{chr(97 + i)}" + "a" * 62 + "." + ".".join(["b" * 63] * 2) + "."
               + "c" * 61 + "/tcp/65535" for i in range(MAX_LISTEN_ADDRS)]
    assert all(len(Multiaddr.parse(a).host) == 253 for a in longest)
    assert sum(len(a) for a in longest) > 4096
    admitted, kept = await _handshake_is_admitted(start_node, longest)
    assert admitted and kept == tuple(longest)


async def test_close_limit_reached_makes_the_receiver_back_off(start_node: StartNode) -> None:
    a = await start_node(host="127.0.0.62")
    b = await start_node(host="127.0.0.63")
    await a.node.dial(b.addr)
    await wait_for(lambda: a.node.peer_id in b.peers())
    await b.node.connections.disconnect(a.node.peer_id, CloseCode.LIMIT_REACHED, "full")
    dialer = a.node._dialer
    assert dialer is not None
    await wait_for(lambda: b.node.peer_id not in a.peers() and dialer.backing_off(
        b.node.peer_id), 5.0)


async def test_two_dials_to_one_peer_share_one_connection(start_node: StartNode) -> None:
    a = await start_node(host="127.0.0.64")
    b = await start_node(host="127.0.0.65")
    ups: list[LinkEvent] = []
    b.node.observe_links(lambda e: ups.append(e) if isinstance(e, LinkUp) else None)
    first, second = await asyncio.gather(a.node.connections.dial(b.addr),
                                         a.node.connections.dial(b.addr))
    assert first is second
    await wait_for(lambda: a.node.peer_id in b.peers())
    # Both decided; exactly one connection ever reached b.
    assert len([e for e in ups if e.link.peer_id == a.node.peer_id]) == 1
    assert b.node.connections.handshake_failures == {}


async def test_an_unspecified_bind_is_never_advertised() -> None:
    async with asyncio.TaskGroup() as tg:
        cm = ConnectionManager(NodeKeys.derive(Identity.generate()), TransportSettings(), tg,
                               deliver=lambda *_: None, rng=os.urandom)
        cm.listen_addrs = (Multiaddr.parse("/ip4/0.0.0.0/tcp/4001"),
                           Multiaddr.parse("/ip6/::/tcp/4001"))
        assert cm._advertised() == ()
        cm.announce_addrs = (Multiaddr.parse("/ip4/203.0.113.7/tcp/4001"),) * 2
        assert cm._advertised() == ("/ip4/203.0.113.7/tcp/4001",)
