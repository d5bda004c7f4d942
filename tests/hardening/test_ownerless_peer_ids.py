"""Issue 11 item 7: ownerless PeerIds are refused wherever a key arrives.

The identity point ``01 00..00`` with the trivial signature (R = identity, S = 0) verifies for
every message under OpenSSL, and so do its spellings y = p + 1 and "sign bit set on x = 0". A
node must refuse them in the handshake (real sockets), in DHT identify answers (real UDP), in
peer records, and in MLS KeyPackages (the credentials of channel members).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace

import pytest
import umsgpack

from dht.errors import RecordError
from dht.protocol import IDENTIFY_DOMAIN
from dht.records import PeerRecord
from dht.service import DhtService
from dht.wire import RESPONSE, WireError, parse_datagram
from mls.crypto.suite import SUITES
from mls.errors import MlsError
from mls.key_packages import create_key_package, validate_key_package
from mls.messages import Credential
from mls.messages.key_package import KeyPackage
from node.core import cbor
from node.core.identity import Identity, node_id_for
from tests.dht.helpers import make_node, wait_for
from tests.dht.hostile import HostilePeer
from tests.hardening.raw import forged_handshake
from tests.harness import StartNode

P = 2**255 - 19
IDENTITY = bytes([1]) + bytes(31)
TRIVIAL = IDENTITY + bytes(32)  # R = identity, S = 0
OWNERLESS = {
    "identity": IDENTITY,
    "y=p+1": (P + 1).to_bytes(32, "little"),
    "sign-bit-on-x=0": IDENTITY[:31] + b"\x80",
}


@pytest.mark.parametrize("name", OWNERLESS)
async def test_handshake_with_an_ownerless_key_is_refused(
    start_node: StartNode, name: str
) -> None:
    victim = await start_node()
    conns = victim.node.connections
    host, port = victim.addr.host_port()
    payload = {"v": 1, "identity_key": OWNERLESS[name], "signature": TRIVIAL, "listen_addrs": []}
    link = await forged_handshake(host, port, payload, source="127.0.0.21")
    try:
        # Wait for the victim's decision, whichever it is, then check which it was.
        await wait_for(lambda: bool(conns.handshake_failures) or bool(conns.links()), 5.0)
        assert conns.links() == []
        assert conns.handshake_failures["HandshakeError"] == 1
        await asyncio.wait_for(link.closed(), 5.0)
    finally:
        link.close()


class _OwnerlessDhtPeer(HostilePeer):
    """Answers ``identify`` with the identity point and the trivial signature."""

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.key = key
        self.node_id = node_id_for(key)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            dgram = parse_datagram(data, 65535)
        except WireError:
            return
        if dgram.kind == RESPONSE:
            self.inbox.put_nowait(data)
            return
        name, args = dgram.body
        self.received.append((name, args))
        if name != "identify":
            return
        assert self.transport is not None
        # TRIVIAL verifies over IDENTIFY_DOMAIN + nonce + node_id like over anything else.
        assert IDENTIFY_DOMAIN
        reply = umsgpack.packb([self.key, TRIVIAL])
        self.transport.sendto(bytes([RESPONSE]) + dgram.msg_id + reply, addr)


@pytest.mark.parametrize("name", OWNERLESS)
async def test_dht_identify_with_an_ownerless_key_is_refused(name: str) -> None:
    victim: DhtService = make_node(70)
    await victim.start()
    loop = asyncio.get_running_loop()
    _, evil = await loop.create_datagram_endpoint(
        lambda: _OwnerlessDhtPeer(OWNERLESS[name]), local_addr=("127.0.0.71", 0)
    )
    try:
        # A ping carrying the ownerless node id makes the victim ask for proof.
        evil.request("ping", [evil.node_id], victim.address)
        proto = victim.protocol
        await wait_for(
            lambda: proto.drops["bad_identify_signature"] + proto.counters["identified"] >= 1, 5.0
        )
        assert proto.counters["identified"] == 0
        assert evil.node_id not in {c.id for c in proto.router.contacts()}
    finally:
        evil.close()
        await victim.stop()


@pytest.mark.parametrize("name", OWNERLESS)
def test_peer_record_with_an_ownerless_key_is_refused(name: str) -> None:
    key = OWNERLESS[name]
    now = int(time.time())
    body = cbor.encode({
        "addrs": ["/ip4/127.0.0.1/tcp/4001"], "env": os.urandom(32), "exp": now + 3600,
        "key": key, "noise": os.urandom(32), "peer": b"\x01\xed" + key, "seq": 1,
    })
    record = cbor.encode([1, body, TRIVIAL])
    with pytest.raises(RecordError):
        PeerRecord.decode(record).verify(now)


@pytest.mark.parametrize("name", OWNERLESS)
def test_mls_key_package_with_an_ownerless_key_is_refused(name: str) -> None:
    suite = SUITES[1]
    identity = Identity.generate()
    bundle = create_key_package(
        suite, Credential.basic(b"\x01\xed" + OWNERLESS[name]), identity.seed(),
        rng=os.urandom, now=int(time.time()),
    )
    genuine = bundle.key_package
    validate_key_package(suite, genuine, now=int(time.time()))  # as made: fine
    # The same KeyPackage claiming the ownerless key, every signature the trivial one.
    leaf = replace(genuine.leaf_node, signature_key=OWNERLESS[name], signature=TRIVIAL)
    forged = KeyPackage(genuine.cipher_suite, genuine.init_key, leaf, signature=TRIVIAL)
    forged = KeyPackage.from_bytes(forged.to_bytes())
    with pytest.raises(MlsError):
        validate_key_package(suite, forged, now=int(time.time()))
