"""message-protection.json (all seven suites) plus round trips and tamper properties for
``mls.protection``."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mls.codec import Writer
from mls.crypto import SUITES, get_suite
from mls.errors import CryptoError, DecodeError, MlsError, ValidationError
from mls.group_context import GroupContext
from mls.messages.commit import Commit
from mls.messages.common import ContentType, SenderType, WireFormat
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    MLSMessage,
    PrivateContentAAD,
    PrivateMessage,
    PublicMessage,
    Sender,
    SenderData,
    SenderDataAAD,
)
from mls.messages.proposals import Proposal
from mls.protection import (
    UnverifiedContent,
    VerifiedContent,
    authenticate,
    membership_tag,
    protect_private,
    protect_public,
    unprotect_private,
    unprotect_public,
)
from mls.secret_tree import KeyReuseError, SecretTree, sender_data_key_nonce
from tests.vectors import case_id, load_vectors, vector_params

h = bytes.fromhex
SENDER_LEAF = 1  # the vectors' sender, in a two-leaf secret tree
KINDS = {
    "proposal": ("public", "private"),
    "commit": ("public", "private"),
    "application": ("private",),
}


VECTOR = "mls/message-protection.json"


def _kinds(i: int, case: dict[str, Any]) -> list[tuple[str, tuple[str, str]]]:
    return [(f"{kind}-{form}", (kind, form)) for kind, forms in KINDS.items() for form in forms]


CASES = vector_params(VECTOR, case_id, suite_key="cipher_suite", variants=_kinds, width=3)


class Epoch:
    """One epoch's protection inputs built from a vector case (or made up)."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.suite = get_suite(case["cipher_suite"])
        self.gc = GroupContext(
            case["cipher_suite"],
            h(case["group_id"]),
            case["epoch"],
            h(case["tree_hash"]),
            h(case["confirmed_transcript_hash"]),
        )
        self.encryption_secret = h(case["encryption_secret"])
        self.sender_data_secret = h(case["sender_data_secret"])
        self.membership_key = h(case["membership_key"])
        self.signature_priv = h(case["signature_priv"])
        self.signature_pub = h(case["signature_pub"])

    def tree(self) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, 2)

    def unprotect(self, data: bytes, tree: SecretTree | None = None) -> VerifiedContent:
        """MLSMessage bytes -> verified content, the way a receiver runs it."""
        payload = MLSMessage.from_bytes(data).payload
        unverified: UnverifiedContent
        if isinstance(payload, PublicMessage):
            unverified = unprotect_public(
                self.suite, payload, group_context=self.gc, membership_key=self.membership_key
            )
        elif isinstance(payload, PrivateMessage):
            unverified = unprotect_private(
                self.suite,
                payload,
                group_context=self.gc,
                secret_tree=tree or self.tree(),
                sender_data_secret=self.sender_data_secret,
            )
        else:
            raise AssertionError(f"unexpected payload {type(payload).__name__}")
        return unverified.verify(self.signature_pub)

    def protect(
        self, form: str, content: bytes | Proposal | Commit, tree: SecretTree, **kw: Any
    ) -> bytes:
        wf = WireFormat.PUBLIC_MESSAGE if form == "public" else WireFormat.PRIVATE_MESSAGE
        fc = FramedContent(
            self.gc.group_id, self.gc.epoch, Sender.member(SENDER_LEAF), b"", content
        )
        # Any MAC-sized value stands in for a commit's confirmation tag here.
        tag = bytes(range(self.suite.nh)) if isinstance(content, Commit) else None
        ac = authenticate(self.suite, wf, fc, self.signature_priv, self.gc, confirmation_tag=tag)
        msg: PublicMessage | PrivateMessage
        if form == "public":
            msg = protect_public(
                self.suite, ac, group_context=self.gc, membership_key=self.membership_key
            )
        else:
            msg = protect_private(
                self.suite,
                ac,
                secret_tree=tree,
                sender_data_secret=self.sender_data_secret,
                rng=os.urandom,
                **kw,
            )
        return MLSMessage(msg).to_bytes()


def _expected(case: dict[str, Any], kind: str) -> bytes | Proposal | Commit:
    raw = h(case[kind])
    if kind == "proposal":
        return Proposal.from_bytes(raw)
    if kind == "commit":
        return Commit.from_bytes(raw)
    return raw


@pytest.mark.parametrize(("case", "kind", "form"), CASES)
def test_vector_unprotect(case: dict[str, Any], kind: str, form: str) -> None:
    ep = Epoch(case)
    verified = ep.unprotect(h(case[f"{kind}_{form[:3] if form == 'public' else form[:4]}"]))
    expected = _expected(case, kind)
    assert verified.content.content == expected
    assert verified.sender == Sender.member(SENDER_LEAF)
    assert verified.content.group_id == ep.gc.group_id
    assert verified.content.epoch == ep.gc.epoch
    wf = WireFormat.PUBLIC_MESSAGE if form == "public" else WireFormat.PRIVATE_MESSAGE
    assert verified.wire_format == wf
    # Byte-exact content: the raw struct re-encodes to the vector's bytes.
    got = expected if isinstance(expected, bytes) else expected.to_bytes()
    assert got == h(case[kind])


@pytest.mark.parametrize(("case", "kind", "form"), CASES)
def test_vector_protect_roundtrip(case: dict[str, Any], kind: str, form: str) -> None:
    ep = Epoch(case)
    content = _expected(case, kind)
    data = ep.protect(form, content, ep.tree(), padding=7)
    verified = ep.unprotect(data, ep.tree())
    assert verified.content.content == content
    assert verified.sender == Sender.member(SENDER_LEAF)
    if form == "public":
        # Ed25519 signatures are deterministic, so a PublicMessage is too.
        assert data == ep.protect(form, content, ep.tree())


def test_vector_counts() -> None:
    suites = sorted(c["cipher_suite"] for c in load_vectors(VECTOR))
    assert suites == sorted(SUITES) == [1, 2, 3, 4, 5, 6, 7]
    assert sum(len(v) for v in KINDS.values()) == 5


# ---- made-up epochs for the round-trip and tamper tests -------------------------------------


def _made_up(suite_id: int, seed: int = 0) -> Epoch:
    suite = get_suite(suite_id)
    priv, pub = suite.generate_signature_key_pair(lambda n: bytes([seed + 1]) * n)
    nh = suite.nh
    return Epoch(
        {
            "cipher_suite": suite_id,
            "group_id": b"group".hex(),
            "epoch": 5,
            "tree_hash": bytes(nh).hex(),
            "confirmed_transcript_hash": (bytes([1]) * nh).hex(),
            "encryption_secret": (bytes([seed + 2]) * nh).hex(),
            "sender_data_secret": (bytes([seed + 3]) * nh).hex(),
            "membership_key": (bytes([seed + 4]) * nh).hex(),
            "signature_priv": priv.hex(),
            "signature_pub": pub.hex(),
        }
    )


SUITE_IDS = pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")


@SUITE_IDS
def test_private_generations_advance_and_replay_is_rejected(suite_id: int) -> None:
    ep = _made_up(suite_id)
    send, recv = ep.tree(), ep.tree()
    msgs = [ep.protect("private", f"m{i}".encode(), send) for i in range(3)]
    # Out of order is fine; each message has its own generation.
    for i in (2, 0, 1):
        got = ep.unprotect(msgs[i], recv)
        assert got.content.content == f"m{i}".encode()
    with pytest.raises(KeyReuseError):
        ep.unprotect(msgs[1], recv)


@SUITE_IDS
def test_padding_and_block_padding(suite_id: int) -> None:
    ep = _made_up(suite_id)
    plain = ep.protect("private", b"x", ep.tree())
    padded = ep.protect("private", b"x", ep.tree(), padding=100)
    blocked = ep.protect("private", b"x", ep.tree(), pad_block=256)
    assert _ct_len(padded) == _ct_len(plain) + 100
    assert (_ct_len(blocked) - ep.suite.hpke.aead.nt) % 256 == 0
    for d in (padded, blocked):
        assert ep.unprotect(d).content.content == b"x"


def _ct_len(data: bytes) -> int:
    msg = MLSMessage.from_bytes(data).payload
    assert isinstance(msg, PrivateMessage)
    return len(msg.ciphertext)


def _auth_bytes(ac: AuthenticatedContent) -> bytes:
    w = Writer()
    ac.auth.encode(w)
    return w.getvalue()


def _reencrypt(
    ep: Epoch, msg: PrivateMessage, plaintext: bytes, reuse_guard: bytes
) -> PrivateMessage:
    """A PrivateMessage whose content plaintext is ``plaintext``, correctly encrypted for
    SENDER_LEAF generation 0: lets tests reach the plaintext decoder."""
    key = (
        ep.tree().next_handshake_key(SENDER_LEAF)
        if msg.content_type != ContentType.APPLICATION
        else ep.tree().next_application_key(SENDER_LEAF)
    )
    nonce = bytes(a ^ b for a, b in zip(key.nonce[:4], reuse_guard, strict=True)) + key.nonce[4:]
    aad = PrivateContentAAD(msg.group_id, msg.epoch, msg.content_type, msg.authenticated_data)
    ct = ep.suite.aead_seal(key.key, nonce, aad.to_bytes(), plaintext)
    sd_key, sd_nonce = sender_data_key_nonce(ep.suite, ep.sender_data_secret, ct)
    sd_aad = SenderDataAAD(msg.group_id, msg.epoch, msg.content_type).to_bytes()
    esd = ep.suite.aead_seal(
        sd_key, sd_nonce, sd_aad, SenderData(SENDER_LEAF, 0, reuse_guard).to_bytes()
    )
    return replace(msg, encrypted_sender_data=esd, ciphertext=ct)


@SUITE_IDS
def test_nonzero_padding_rejected(suite_id: int) -> None:
    ep = _made_up(suite_id)
    msg = MLSMessage.from_bytes(ep.protect("private", b"hi", ep.tree())).payload
    assert isinstance(msg, PrivateMessage)
    fc = FramedContent(ep.gc.group_id, ep.gc.epoch, Sender.member(SENDER_LEAF), b"", b"hi")
    ac = authenticate(ep.suite, WireFormat.PRIVATE_MESSAGE, fc, ep.signature_priv, ep.gc)
    body = Writer().opaque(b"hi").getvalue() + _auth_bytes(ac)
    good = _reencrypt(ep, msg, body + bytes(3), b"\x01\x02\x03\x04")
    assert ep.unprotect(MLSMessage(good).to_bytes()).content.content == b"hi"
    bad = _reencrypt(ep, msg, body + b"\x00\x01\x00", b"\x01\x02\x03\x04")
    with pytest.raises(DecodeError):
        ep.unprotect(MLSMessage(bad).to_bytes())


@SUITE_IDS
def test_wrong_signature_key_and_membership_key(suite_id: int) -> None:
    ep, other = _made_up(suite_id), _made_up(suite_id, seed=9)
    prop = Proposal.from_bytes(h("000300000002"))  # Remove(leaf 2)
    pub = MLSMessage.from_bytes(ep.protect("public", prop, ep.tree())).payload
    assert isinstance(pub, PublicMessage)
    unverified = unprotect_public(
        ep.suite, pub, group_context=ep.gc, membership_key=ep.membership_key
    )
    with pytest.raises(CryptoError):
        unverified.verify(other.signature_pub)
    with pytest.raises(CryptoError):
        unprotect_public(ep.suite, pub, group_context=ep.gc, membership_key=other.membership_key)
    # A different group context changes the signed bytes.
    gc2 = replace(ep.gc, tree_hash=b"\x01" * ep.suite.nh)
    with pytest.raises(CryptoError):
        unprotect_public(ep.suite, pub, group_context=gc2, membership_key=ep.membership_key).verify(
            ep.signature_pub
        )
    assert (
        membership_tag(ep.suite, ep.membership_key, unverified.authenticated_content, ep.gc)
        == pub.membership_tag
    )


@SUITE_IDS
def test_wrong_group_or_epoch_is_validation_error(suite_id: int) -> None:
    ep = _made_up(suite_id)
    prop = Proposal.from_bytes(h("000300000002"))
    for form in ("public", "private"):
        data = ep.protect(form, prop, ep.tree())
        for gc in (replace(ep.gc, epoch=ep.gc.epoch + 1), replace(ep.gc, group_id=b"other")):
            ep2 = _made_up(suite_id)
            ep2.gc = gc
            with pytest.raises(ValidationError):
                ep2.unprotect(data)


@SUITE_IDS
def test_application_data_never_public(suite_id: int) -> None:
    ep = _made_up(suite_id)
    fc = FramedContent(ep.gc.group_id, ep.gc.epoch, Sender.member(SENDER_LEAF), b"", b"hi")
    ac = authenticate(ep.suite, WireFormat.PUBLIC_MESSAGE, fc, ep.signature_priv, ep.gc)
    with pytest.raises(ValueError):
        protect_public(ep.suite, ac, group_context=ep.gc, membership_key=ep.membership_key)
    forged = PublicMessage(fc, ac.auth, b"\x00" * 32)
    with pytest.raises(ValidationError):
        unprotect_public(ep.suite, forged, group_context=ep.gc, membership_key=ep.membership_key)


@SUITE_IDS
def test_external_sender_public_message_has_no_tag(suite_id: int) -> None:
    ep = _made_up(suite_id)
    prop = Proposal.from_bytes(h("000300000002"))
    fc = FramedContent(ep.gc.group_id, ep.gc.epoch, Sender(SenderType.EXTERNAL, 0), b"", prop)
    ac = authenticate(ep.suite, WireFormat.PUBLIC_MESSAGE, fc, ep.signature_priv, None)
    msg = protect_public(ep.suite, ac, group_context=ep.gc, membership_key=None)
    assert msg.membership_tag is None
    got = unprotect_public(ep.suite, msg, group_context=ep.gc, membership_key=None)
    assert got.verify(ep.signature_pub).content.content == prop
    with pytest.raises(ValueError):
        protect_private(
            ep.suite,
            authenticate(ep.suite, WireFormat.PRIVATE_MESSAGE, fc, ep.signature_priv, None),
            secret_tree=ep.tree(),
            sender_data_secret=ep.sender_data_secret,
            rng=os.urandom,
        )


@pytest.mark.parametrize(
    ("sender_type", "kind"),
    [
        (SenderType.EXTERNAL, "commit"),
        (SenderType.NEW_MEMBER_PROPOSAL, "commit"),
        (SenderType.NEW_MEMBER_COMMIT, "proposal"),
    ],
    ids=["external-commit", "new_member_proposal-commit", "new_member_commit-proposal"],
)
def test_sender_type_content_type_rules(sender_type: SenderType, kind: str) -> None:
    ep = _made_up(1)
    sender = Sender(sender_type, 0)
    body = _BODIES[kind]
    fc = FramedContent(ep.gc.group_id, ep.gc.epoch, sender, b"", body)
    tag = bytes(32) if kind == "commit" else None
    ac = authenticate(
        ep.suite, WireFormat.PUBLIC_MESSAGE, fc, ep.signature_priv, ep.gc, confirmation_tag=tag
    )
    with pytest.raises(ValueError):
        protect_public(ep.suite, ac, group_context=ep.gc, membership_key=None)
    with pytest.raises(ValidationError):
        unprotect_public(
            ep.suite, PublicMessage(fc, ac.auth), group_context=ep.gc, membership_key=None
        )


def test_verified_content_cannot_be_built_directly() -> None:
    ep = _made_up(1)
    fc = FramedContent(ep.gc.group_id, ep.gc.epoch, Sender.member(0), b"", b"hi")
    ac = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, fc, FramedContentAuthData(b"sig"))
    with pytest.raises(TypeError):
        VerifiedContent(ac)


def test_secrets_not_in_repr() -> None:
    ep = _made_up(1)
    data = ep.protect("private", b"secret-payload", ep.tree())
    unverified = unprotect_private(
        ep.suite,
        MLSMessage.from_bytes(data).payload,  # type: ignore[arg-type]
        group_context=ep.gc,
        secret_tree=ep.tree(),
        sender_data_secret=ep.sender_data_secret,
    )
    text = repr(unverified) + repr(unverified.verify(ep.signature_pub))
    for secret in (ep.sender_data_secret, ep.encryption_secret, ep.signature_priv):
        assert secret.hex() not in text and repr(secret) not in text


# ---- tamper properties: only typed MLS errors escape ----------------------------------------

_TAMPER = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _flip(data: bytes, pos: int, mask: int) -> bytes:
    pos %= len(data)
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]


def _assert_rejected(ep: Epoch, data: bytes) -> None:
    with pytest.raises(MlsError) as info:
        ep.unprotect(data)
    assert isinstance(info.value, CryptoError | ValidationError | DecodeError)


_EPOCHS = {sid: _made_up(sid) for sid in sorted(SUITES)}
_PROP = Proposal.from_bytes(h("000300000002"))
_BODIES: dict[str, bytes | Proposal | Commit] = {
    "application": b"a" * 40,
    "proposal": _PROP,
    "commit": Commit(),
}
_SAMPLES = {
    (sid, form, kind): _EPOCHS[sid].protect(
        form,
        _BODIES[kind],
        _EPOCHS[sid].tree(),
    )
    for sid in sorted(SUITES)
    for form, kinds in (
        ("private", ("application", "proposal", "commit")),
        ("public", ("proposal", "commit")),
    )
    for kind in kinds
}


@pytest.mark.parametrize("key", list(_SAMPLES), ids=lambda k: f"suite{k[0]}-{k[1]}-{k[2]}")
@_TAMPER
@given(pos=st.integers(min_value=4, max_value=10_000), mask=st.integers(min_value=1, max_value=255))
def test_tampered_message_rejected(key: tuple[int, str, str], pos: int, mask: int) -> None:
    # Positions 0-3 are version and wire format, handled by the MLSMessage decoder.
    ep = _EPOCHS[key[0]]
    data = _SAMPLES[key]
    _assert_rejected(ep, _flip(data, 4 + (pos - 4) % (len(data) - 4), mask))


@SUITE_IDS
@_TAMPER
@given(cut=st.integers(min_value=1, max_value=10_000), extra=st.binary(max_size=8))
def test_truncated_or_extended_message_rejected(suite_id: int, cut: int, extra: bytes) -> None:
    ep = _EPOCHS[suite_id]
    data = _SAMPLES[(suite_id, "private", "commit")]
    _assert_rejected(ep, data[: cut % len(data)] + extra if extra else data[: cut % len(data)])


@SUITE_IDS
@_TAMPER
@given(
    plaintext=st.binary(max_size=200),
    content_type=st.sampled_from(list(ContentType)),
)
def test_random_plaintext_under_valid_keys(
    suite_id: int, plaintext: bytes, content_type: ContentType
) -> None:
    """Correctly encrypted garbage reaches the plaintext decoder: still only typed errors."""
    ep = _EPOCHS[suite_id]
    base = MLSMessage.from_bytes(_SAMPLES[(suite_id, "private", "application")]).payload
    assert isinstance(base, PrivateMessage)
    msg = _reencrypt(ep, replace(base, content_type=content_type), plaintext, b"\x00" * 4)
    try:
        ep.unprotect(MLSMessage(msg).to_bytes())
    except MlsError as e:
        assert isinstance(e, CryptoError | ValidationError | DecodeError)
    else:  # pragma: no cover - would need a forged Ed25519 signature
        raise AssertionError("garbage verified")


def test_forged_copy_does_not_burn_the_genuine_message() -> None:
    ep = _made_up(1)
    recv = ep.tree()
    data = ep.protect("private", b"genuine", ep.tree())
    forged = data[:-1] + bytes([data[-1] ^ 1])  # last byte of the AEAD tag
    with pytest.raises(CryptoError):
        ep.unprotect(forged, recv)
    assert ep.unprotect(data, recv).content.content == b"genuine"
    # The genuine message consumed the generation: a replay of it (or the forgery) is refused.
    with pytest.raises(KeyReuseError):
        ep.unprotect(data, recv)
    with pytest.raises(CryptoError):
        ep.unprotect(forged, recv)


@SUITE_IDS
def test_forgeries_past_the_sample_never_burn_a_generation(suite_id: int) -> None:
    """Flip each byte of the content ciphertext after the sender-data sample (so the sender
    data still decrypts and names a real generation): every copy fails, none burns the key."""
    ep = _made_up(suite_id)
    recv = ep.tree()
    send = ep.tree()
    msgs = [ep.protect("private", f"m{i}".encode(), send) for i in range(2)]
    for data in msgs:
        pm = MLSMessage.from_bytes(data).payload
        assert isinstance(pm, PrivateMessage)
        ct = pm.ciphertext
        assert len(ct) > ep.suite.nh
        for i in range(ep.suite.nh, len(ct)):
            forged = replace(pm, ciphertext=ct[:i] + bytes([ct[i] ^ 0x80]) + ct[i + 1 :])
            with pytest.raises(CryptoError) as info:
                ep.unprotect(MLSMessage(forged).to_bytes(), recv)
            assert not isinstance(info.value, KeyReuseError)
    # Later generation first, then the earlier one: both genuine messages still open once.
    for i in (1, 0):
        assert ep.unprotect(msgs[i], recv).content.content == f"m{i}".encode()
        with pytest.raises(KeyReuseError):
            ep.unprotect(msgs[i], recv)


@SUITE_IDS
def test_bad_padding_does_not_burn_the_generation(suite_id: int) -> None:
    """A correctly encrypted plaintext with non-zero padding (only an insider can make one) is
    refused without spending the generation, so the genuine message for it still opens."""
    ep = _made_up(suite_id)
    recv = ep.tree()
    msg = MLSMessage.from_bytes(ep.protect("private", b"hi", ep.tree())).payload
    assert isinstance(msg, PrivateMessage)
    fc = FramedContent(ep.gc.group_id, ep.gc.epoch, Sender.member(SENDER_LEAF), b"", b"hi")
    ac = authenticate(ep.suite, WireFormat.PRIVATE_MESSAGE, fc, ep.signature_priv, ep.gc)
    body = Writer().opaque(b"hi").getvalue() + _auth_bytes(ac)
    bad = _reencrypt(ep, msg, body + b"\x00\x01", b"\x05\x06\x07\x08")
    with pytest.raises(DecodeError):
        ep.unprotect(MLSMessage(bad).to_bytes(), recv)
    good = _reencrypt(ep, msg, body, b"\x05\x06\x07\x08")
    assert ep.unprotect(MLSMessage(good).to_bytes(), recv).content.content == b"hi"
    with pytest.raises(KeyReuseError):
        ep.unprotect(MLSMessage(good).to_bytes(), recv)
