"""Noise state machine, cipher state and failure handling (vectors live in
``test_noise_vectors.py``, interop in ``test_noise_interop.py``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.core.errors import DecodeError, HandshakeError, LimitExceeded, TransportError
from node.transport.noise import (
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    PATTERNS,
    CipherState,
    ClosedCipherState,
    HandshakeState,
    handshake_pattern,
    keypair,
    parse_protocol_name,
)
from node.transport.noise.cipher import CIPHERS

XX = "Noise_XX_25519_ChaChaPoly_SHA256"
XK = "Noise_XK_25519_ChaChaPoly_SHA256"


def _pair(name: str, seed: int = 0, **extra: Any) -> tuple[HandshakeState, HandshakeState]:
    """Initiator and responder with the keys their pattern needs, from a seeded RNG."""
    rnd = random.Random(seed)
    proto = parse_protocol_name(name)
    n = proto.dh.dhlen
    s_i, s_r = rnd.randbytes(n), rnd.randbytes(n)
    psks = [rnd.randbytes(32) for _ in range(proto.pattern.psk_count)]
    pre_i, pre_r = proto.pattern.pre_initiator, proto.pattern.pre_responder
    init = HandshakeState(
        name,
        initiator=True,
        s=s_i,
        rs=keypair(s_r, proto.dh.name).public if "s" in pre_r else None,
        psks=psks,
        rng=rnd.randbytes,
        **extra,
    )
    resp = HandshakeState(
        name,
        initiator=False,
        s=s_r,
        rs=keypair(s_i, proto.dh.name).public if "s" in pre_i else None,
        psks=psks,
        rng=rnd.randbytes,
        **extra,
    )
    return init, resp


def _run(init: HandshakeState, resp: HandshakeState, upto: int | None = None) -> list[bytes]:
    """Exchange handshake messages (all, or the first ``upto``); returns them."""
    sent = []
    for i in range(len(init.protocol.pattern.messages) if upto is None else upto):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        msg = sender.write_message(b"payload %d" % i)
        assert receiver.read_message(msg) == b"payload %d" % i
        sent.append(msg)
    return sent


def _assert_local(exc: pytest.ExceptionInfo[TransportError]) -> None:
    assert exc.value.remote is False


def _assert_dead(state: HandshakeState) -> None:
    assert state.failed and not state.complete and not state.is_our_turn
    for call in (
        lambda: state.write_message(b""),
        lambda: state.read_message(b"\x00" * 64),
        lambda: state.handshake_hash,
        state.split,
    ):
        with pytest.raises(TransportError) as exc:
            call()
        _assert_local(exc)


# -- every pattern, end to end --------------------------------------------------------------

ALL_PATTERNS = [*PATTERNS, "NNpsk0", "XXpsk3", "IKpsk2", "NNpsk0+psk2", "Npsk0", "KKpsk0+psk2"]


@pytest.mark.parametrize("suite", ["25519_ChaChaPoly_SHA256", "448_AESGCM_BLAKE2b"])
@pytest.mark.parametrize("pattern", ALL_PATTERNS)
def test_every_pattern_round_trip(pattern: str, suite: str) -> None:
    init, resp = _pair(f"Noise_{pattern}_{suite}")
    _run(init, resp)
    assert init.complete and resp.complete
    assert init.handshake_hash == resp.handshake_hash
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    assert r_recv.decrypt(i_send.encrypt(b"to responder")) == b"to responder"
    if init.protocol.pattern.one_way:
        assert isinstance(i_recv, ClosedCipherState) and isinstance(r_send, ClosedCipherState)
        with pytest.raises(TransportError) as exc:
            r_send.encrypt(b"not allowed")
        _assert_local(exc)
    else:
        assert i_recv.decrypt(r_send.encrypt(b"to initiator")) == b"to initiator"


def test_bare_pattern_name_uses_default_suite() -> None:
    assert HandshakeState("XX", initiator=True, s=bytes(32), rng=random.Random(1).randbytes)
    assert parse_protocol_name("XX").name == XX


def test_ephemerals_come_from_the_injected_rng() -> None:
    a1, _ = _pair(XX, seed=7)
    a2, _ = _pair(XX, seed=7)
    a3, _ = _pair(XX, seed=8)
    m1, m2, m3 = (s.write_message(b"") for s in (a1, a2, a3))
    assert m1 == m2 != m3


# -- state machine misuse -------------------------------------------------------------------


def test_turn_order_and_completion_are_enforced() -> None:
    init, resp = _pair(XX)
    assert init.is_our_turn and not resp.is_our_turn
    misuse: list[Callable[[], object]] = [
        lambda: resp.write_message(b""),
        lambda: init.read_message(b"\x00" * 48),
    ]
    for call in misuse:
        with pytest.raises(TransportError) as exc:
            call()
        _assert_local(exc)
    with pytest.raises(TransportError) as exc:
        init.split()
    _assert_local(exc)
    # Misuse is not a failure: the handshake still completes.
    _run(init, resp)
    for state in (init, resp):
        for call in (lambda s=state: s.write_message(b""), lambda s=state: s.read_message(b"")):
            with pytest.raises(TransportError) as exc:
                call()
            _assert_local(exc)
        state.split()
        with pytest.raises(TransportError) as exc:
            state.split()  # twice would share nonces between two users
        _assert_local(exc)
        assert len(state.handshake_hash) == 32


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        (XX, {"initiator": True}),  # no static key
        (XK, {"initiator": True, "s": bytes(32)}),  # no pre-known responder key
        (XX, {"initiator": True, "s": bytes(32), "rs": bytes(32)}),  # rs would be ignored
        (XX, {"initiator": True, "s": bytes(31)}),
        (XK, {"initiator": True, "s": bytes(32), "rs": bytes(33)}),
        ("Noise_XXpsk3_25519_ChaChaPoly_SHA256", {"initiator": True, "s": bytes(32)}),
        ("Noise_NN_25519_ChaChaPoly_SHA256", {"initiator": True, "psks": [bytes(32)]}),
        ("Noise_NNpsk0_25519_ChaChaPoly_SHA256", {"initiator": True, "psks": [bytes(31)]}),
        (XX, {"initiator": True, "s": bytes(32), "rng": None}),  # no way to make an ephemeral
        ("Noise_XXfallback_25519_ChaChaPoly_SHA256", {"initiator": True}),
        ("Noise_NNpsk3_25519_ChaChaPoly_SHA256", {"initiator": True}),
        ("Noise_NNpsk0+psk0_25519_ChaChaPoly_SHA256", {"initiator": True}),
        ("Noise_ZZ_25519_ChaChaPoly_SHA256", {"initiator": True}),
        ("Noise_XX_25519_ChaChaPoly_MD5", {"initiator": True}),
        ("Noise_XX_25519_ChaChaPoly", {"initiator": True}),
    ],
)
def test_bad_construction_is_a_local_error(name: str, kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("rng", random.Random(0).randbytes)
    with pytest.raises(TransportError) as exc:
        HandshakeState(name, **kwargs)
    _assert_local(exc)


def test_oversized_payload_is_refused_without_breaking_the_state() -> None:
    init, resp = _pair(XX)
    with pytest.raises(TransportError) as exc:
        init.write_message(bytes(MAX_MESSAGE_LEN - 31))  # + 32-byte e > 65535
    _assert_local(exc)
    msg = init.write_message(bytes(MAX_MESSAGE_LEN - 32))
    assert len(msg) == MAX_MESSAGE_LEN
    assert resp.read_message(msg) == bytes(MAX_MESSAGE_LEN - 32)


# -- remote failures ------------------------------------------------------------------------


@pytest.mark.parametrize("index", [1, 2])
def test_every_single_bit_flip_is_detected(index: int) -> None:
    init, resp = _pair(XX)
    msgs = _run(init, resp)
    for pos in range(len(msgs[index])):
        a, b = _pair(XX)
        _run(a, b, upto=index)
        receiver = a if index % 2 else b
        tampered = bytearray(msgs[index])
        tampered[pos] ^= 0x01
        with pytest.raises(HandshakeError) as exc:
            receiver.read_message(bytes(tampered))
        assert exc.value.remote is True
        _assert_dead(receiver)


@pytest.mark.parametrize("data", [b"", b"\x00" * 31, b"\x00" * 47, b"\x00" * (MAX_MESSAGE_LEN + 1)])
def test_short_and_long_messages(data: bytes) -> None:
    _, resp = _pair(XK)
    with pytest.raises(HandshakeError):
        resp.read_message(data)
    _assert_dead(resp)


def test_low_order_ephemeral_is_rejected() -> None:
    init, resp = _pair(XK)
    msg = init.write_message(b"")
    with pytest.raises(HandshakeError):
        resp.read_message(bytes(32) + msg[32:])  # es = DH(s, 0) is all zeros
    _assert_dead(resp)


def _reader_at(name: str, index: int, seed: int) -> HandshakeState:
    init, resp = _pair(name, seed=seed)
    _run(init, resp, upto=index)
    return init if index % 2 else resp


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(
        [XX, XK, "Noise_IK_25519_ChaChaPoly_SHA256", "Noise_NNpsk0_25519_AESGCM_SHA256"]
    ),
    index=st.integers(0, 2),
    data=st.binary(max_size=200),
)
def test_random_bytes_only_raise_handshake_error(name: str, index: int, data: bytes) -> None:
    pattern = handshake_pattern(name.split("_")[1])
    index = min(index, len(pattern.messages) - 1)
    reader = _reader_at(name, index, seed=index)
    try:
        payload = reader.read_message(data)
    except HandshakeError:
        _assert_dead(reader)
    else:
        # Only possible before any key exists (XX message 1 is e + plaintext payload).
        assert name == XX and index == 0 and payload == data[32:]


@settings(max_examples=150, deadline=None)
@given(
    index=st.integers(1, 2),
    pos=st.integers(0, 10_000),
    xor=st.integers(1, 255),
    cut=st.integers(0, 100),
    extra=st.binary(max_size=20),
    how=st.sampled_from(["flip", "truncate", "extend"]),
)
def test_mutated_messages_are_detected(
    index: int, pos: int, xor: int, cut: int, extra: bytes, how: str
) -> None:
    init, resp = _pair(XX, seed=3)
    msgs = _run(init, resp)
    msg = bytearray(msgs[index])
    if how == "flip":
        msg[pos % len(msg)] ^= xor
    elif how == "truncate":
        del msg[len(msg) - 1 - cut % len(msg) :]
    else:
        msg += extra or b"\x00"
    reader = _reader_at(XX, index, seed=3)
    with pytest.raises(HandshakeError):
        reader.read_message(bytes(msg))
    _assert_dead(reader)


# -- transport ciphers ----------------------------------------------------------------------


def _transport_pair(name: str = XX) -> tuple[CipherState, CipherState, CipherState, CipherState]:
    init, resp = _pair(name)
    _run(init, resp)
    return (*init.split(), *resp.split())


def test_tampered_transport_message_is_a_decode_error_and_keeps_the_nonce() -> None:
    i_send, _, _, r_recv = _transport_pair()
    ct = i_send.encrypt(b"hello")
    bad = bytes([ct[0] ^ 1]) + ct[1:]
    for forged in (bad, ct[:-1], b"", bytes(MAX_MESSAGE_LEN + 1)):
        with pytest.raises(DecodeError):
            r_recv.decrypt(forged)
    assert r_recv.nonce == 0
    assert r_recv.decrypt(ct) == b"hello"
    with pytest.raises(DecodeError):
        r_recv.decrypt(ct)  # a replay uses the wrong nonce


def test_transport_size_limit() -> None:
    i_send, _, _, r_recv = _transport_pair()
    with pytest.raises(TransportError) as exc:
        i_send.encrypt(bytes(MAX_MESSAGE_LEN - 15))
    _assert_local(exc)
    assert len(r_recv.decrypt(i_send.encrypt(bytes(MAX_MESSAGE_LEN - 16)))) == MAX_MESSAGE_LEN - 16


def test_rekey_keeps_both_ends_in_step_and_matches_the_spec() -> None:
    i_send, i_recv, r_send, r_recv = _transport_pair()
    assert r_recv.decrypt(i_send.encrypt(b"one")) == b"one"
    i_send.rekey()
    ct = i_send.encrypt(b"two")
    with pytest.raises(DecodeError):
        r_recv.decrypt(ct)  # the receiver has not rekeyed yet
    r_recv.rekey()
    assert r_recv.decrypt(ct) == b"two"
    assert i_send.nonce == r_recv.nonce == 2  # rekey keeps n
    # The other direction is untouched.
    assert i_recv.decrypt(r_send.encrypt(b"back")) == b"back"


@pytest.mark.parametrize("cipher", ["ChaChaPoly", "AESGCM"])
def test_rekey_and_nonce_encoding_known_answer(cipher: str) -> None:
    key = bytes(range(32))
    aead_cls = ChaCha20Poly1305 if cipher == "ChaChaPoly" else AESGCM
    order: Literal["little", "big"] = "little" if cipher == "ChaChaPoly" else "big"

    def nonce(n: int) -> bytes:
        return bytes(4) + n.to_bytes(8, order)

    cs = CipherState(CIPHERS[cipher], key)
    cs.set_nonce(0x0102030405060708)
    assert cs.encrypt_with_ad(b"ad", b"msg") == aead_cls(key).encrypt(
        nonce(0x0102030405060708), b"msg", b"ad"
    )
    cs.rekey()
    new_key = aead_cls(key).encrypt(nonce(MAX_NONCE), bytes(32), b"")[:32]
    assert cs.encrypt_with_ad(b"", b"x") == aead_cls(new_key).encrypt(
        nonce(0x0102030405060709), b"x", b""
    )


def test_nonce_exhaustion() -> None:
    i_send, _, _, r_recv = _transport_pair()
    i_send.set_nonce(MAX_NONCE - 1)
    r_recv.set_nonce(MAX_NONCE - 1)
    assert r_recv.decrypt(i_send.encrypt(b"last")) == b"last"
    with pytest.raises(LimitExceeded) as exc:
        i_send.encrypt(b"one too many")
    _assert_local(exc)
    with pytest.raises(LimitExceeded):
        r_recv.decrypt(bytes(32))
    i_send.rekey()  # rekey uses the reserved nonce and is still allowed
    with pytest.raises(TransportError):
        i_send.set_nonce(MAX_NONCE + 1)


def test_cipher_without_key_passes_plaintext_through() -> None:
    cs = CipherState(CIPHERS["ChaChaPoly"])
    assert not cs.has_key()
    assert cs.encrypt_with_ad(b"ad", b"clear") == b"clear"
    assert cs.decrypt_with_ad(b"ad", b"clear") == b"clear"
    with pytest.raises(TransportError):
        cs.rekey()


def test_secrets_stay_out_of_repr() -> None:
    s = bytes(range(32))
    init = HandshakeState(XX, initiator=True, s=s, e=s, psks=[], rng=None)
    resp = HandshakeState("Noise_NNpsk0_25519_ChaChaPoly_SHA256", initiator=False, psks=[s], e=s)
    send, recv = CipherState(CIPHERS["AESGCM"], s), CipherState(CIPHERS["ChaChaPoly"], s)
    pair = keypair(s)
    for obj in (init, resp, send, recv, pair):
        assert s.hex() not in repr(obj) and repr(s) not in repr(obj)
    assert pair.public.hex() in repr(pair)
