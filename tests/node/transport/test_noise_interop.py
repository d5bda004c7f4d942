"""Interop with the independent PyPI ``noiseprotocol`` package, both roles, both directions."""

from __future__ import annotations

import random

import pytest
from noise.connection import Keypair, NoiseConnection

from node.transport.noise import HandshakeState, keypair

PROTOCOLS = [
    "Noise_XX_25519_ChaChaPoly_SHA256",
    "Noise_XK_25519_ChaChaPoly_SHA256",
    "Noise_XX_25519_AESGCM_SHA256",
    "Noise_XK_25519_AESGCM_SHA256",
    "Noise_IK_25519_ChaChaPoly_BLAKE2b",
    "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
]
PROLOGUE = b"spacepanda-interop-test"


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _theirs(name: str, initiator: bool, s: bytes, rs: bytes | None, psk: bytes) -> NoiseConnection:
    conn = NoiseConnection.from_name(name.encode())
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(PROLOGUE)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, s)
    if rs is not None:
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, rs)
    if "psk" in name:
        conn.set_psks(psk)
    conn.start_handshake()
    return conn


@pytest.mark.parametrize("ours_initiates", [True, False], ids=["ours-init", "theirs-init"])
@pytest.mark.parametrize("name", PROTOCOLS)
def test_handshake_and_transport(name: str, ours_initiates: bool) -> None:
    rnd = _rng(PROTOCOLS.index(name) * 2 + ours_initiates)
    our_s, their_s, psk = rnd.randbytes(32), rnd.randbytes(32), rnd.randbytes(32)
    our_pub, their_pub = keypair(our_s).public, keypair(their_s).public
    pre_known = "_XK_" in name or "_IK_" in name  # the responder's static is pre-known
    ours = HandshakeState(
        name,
        initiator=ours_initiates,
        prologue=PROLOGUE,
        s=our_s,
        rs=their_pub if pre_known and ours_initiates else None,
        psks=[psk] if "psk" in name else [],
        rng=rnd.randbytes,
    )
    theirs = _theirs(
        name,
        not ours_initiates,
        their_s,
        our_pub if pre_known and not ours_initiates else None,
        psk,
    )

    turn_ours = ours_initiates
    i = 0
    while not ours.complete:
        payload = f"handshake payload {i}".encode() * (i + 1)
        if turn_ours:
            assert theirs.read_message(ours.write_message(payload)) == payload
        else:
            assert ours.read_message(bytes(theirs.write_message(payload))) == payload
        turn_ours = not turn_ours
        i += 1
    assert theirs.handshake_finished
    assert ours.handshake_hash == theirs.get_handshake_hash()
    assert ours.remote_static == their_pub

    send, recv = ours.split()
    for size in (0, 1, 1000, 65535 - 16):
        msg = rnd.randbytes(size)
        assert theirs.decrypt(send.encrypt(msg)) == msg
        assert recv.decrypt(bytes(theirs.encrypt(msg))) == msg

    # Rekey on both ends of each direction keeps them in step.
    send.rekey()
    theirs.rekey_inbound_cipher()
    recv.rekey()
    theirs.rekey_outbound_cipher()
    assert theirs.decrypt(send.encrypt(b"after rekey")) == b"after rekey"
    assert recv.decrypt(bytes(theirs.encrypt(b"back"))) == b"back"
