"""Property tests on every top-level decoder: only DecodeError escapes, and whatever decodes
re-encodes to the same bytes; generated structs survive decode(encode(x)) == x."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mls.codec import Writer
from mls.errors import DecodeError
from mls.messages import (
    Add,
    Capabilities,
    Commit,
    ContentType,
    Credential,
    EncryptedGroupSecrets,
    Extension,
    ExternalInit,
    FramedContent,
    FramedContentAuthData,
    GroupContextExtensions,
    GroupInfo,
    GroupSecrets,
    HPKECiphertext,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    MLSMessage,
    ParentNode,
    PathSecret,
    PreSharedKey,
    PreSharedKeyID,
    PrivateMessage,
    PrivateMessageContent,
    Proposal,
    ProposalRef,
    PublicMessage,
    RatchetTree,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Sender,
    SenderType,
    UnknownProposal,
    Update,
    UpdatePath,
    UpdatePathNode,
    Welcome,
)
from mls.messages.common import CredentialType, ProposalType
from tests.vectors import missing_reason, read_vectors

MESSAGES = "mls/messages.json"
TOP_LEVEL: dict[str, Any] = {
    "MLSMessage": MLSMessage,
    "KeyPackage": KeyPackage,
    "Welcome": Welcome,
    "GroupInfo": GroupInfo,
    "RatchetTree": RatchetTree,
    "Commit": Commit,
    "Proposal": Proposal,
    "LeafNode": LeafNode,
    "GroupSecrets": GroupSecrets,
}

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(cls: Any, data: bytes) -> None:
    try:
        value = cls.from_bytes(data)
    except DecodeError:
        return
    assert value.to_bytes() == data
    assert cls.from_bytes(data) == value


def _seeds() -> dict[str, list[bytes]]:
    """Valid encodings of each top-level struct, cut out of messages.json (first cases)."""
    data = read_vectors(MESSAGES)
    if data is None:
        return {}
    cases = data[:12]
    out: dict[str, list[bytes]] = {name: [] for name in TOP_LEVEL}
    for case in cases:
        h = {k: bytes.fromhex(v) for k, v in case.items()}
        for k in ("mls_welcome", "mls_group_info", "mls_key_package", "private_message"):
            out["MLSMessage"].append(h[k])
        out["MLSMessage"].append(h["public_message_commit"])
        out["KeyPackage"].append(h["mls_key_package"][4:])
        out["Welcome"].append(h["mls_welcome"][4:])
        out["GroupInfo"].append(h["mls_group_info"][4:])
        out["RatchetTree"].append(h["ratchet_tree"])
        out["Commit"].append(h["commit"])
        out["Proposal"].append(b"\x00\x01" + h["add_proposal"])
        out["Proposal"].append(b"\x00\x04" + h["pre_shared_key_proposal"])
        out["LeafNode"].append(h["update_proposal"])
        out["GroupSecrets"].append(h["group_secrets"])
    return out


SEEDS = _seeds()


@pytest.mark.parametrize("name", list(TOP_LEVEL))
@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes(name: str, data: bytes) -> None:
    _check(TOP_LEVEL[name], data)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 0x3F, 0x40, 0x80, 0xC0, 0xFF]))
        elif op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.parametrize("name", list(TOP_LEVEL))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_vectors(name: str, data: st.DataObject) -> None:
    if not SEEDS:
        pytest.skip(missing_reason(MESSAGES))
    cls = TOP_LEVEL[name]
    for seed in SEEDS[name]:  # the seeds themselves must round-trip
        assert cls.from_bytes(seed).to_bytes() == seed
    _check(cls, data.draw(mutated(SEEDS[name])))


# ---- generated structs ----

small = st.binary(max_size=12)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
u16s = st.lists(u16, max_size=4).map(tuple)
extensions = st.lists(
    st.builds(Extension, u16, small), max_size=3, unique_by=lambda e: e.extension_type
).map(tuple)
credentials = st.one_of(
    st.builds(Credential.basic, small),
    st.builds(Credential.x509, st.lists(small, max_size=3).map(tuple)),
    st.builds(
        lambda t, d: Credential(t, data=d),
        u16.filter(lambda t: t not in (CredentialType.BASIC, CredentialType.X509)),
        small,
    ),
)


@st.composite
def leaf_nodes(draw: st.DrawFn) -> LeafNode:
    source = draw(st.sampled_from(list(LeafNodeSource)))
    return LeafNode(
        encryption_key=draw(small),
        signature_key=draw(small),
        credential=draw(credentials),
        capabilities=draw(st.builds(Capabilities, u16s, u16s, u16s, u16s, u16s)),
        leaf_node_source=source,
        extensions=draw(extensions),
        signature=draw(small),
        lifetime=draw(st.builds(Lifetime, u64, u64))
        if source == LeafNodeSource.KEY_PACKAGE
        else None,
        parent_hash=draw(small) if source == LeafNodeSource.COMMIT else None,
    )


key_packages = st.builds(KeyPackage, u16, small, leaf_nodes(), extensions, small)
psk_ids = st.one_of(
    st.builds(PreSharedKeyID.external, small, small),
    st.builds(
        PreSharedKeyID.resumption, st.sampled_from(list(ResumptionPSKUsage)), small, u64, small
    ),
)
known_types = {int(t) for t in ProposalType}
proposal_bodies = st.one_of(
    st.builds(Add, key_packages),
    st.builds(Update, leaf_nodes()),
    st.builds(Remove, u32),
    st.builds(PreSharedKey, psk_ids),
    st.builds(ReInit, small, u16, u16, extensions),
    st.builds(ExternalInit, small),
    st.builds(GroupContextExtensions, extensions),
    st.builds(UnknownProposal, u16.filter(lambda t: t not in known_types and t != 0), small),
)
proposals = st.builds(Proposal, proposal_bodies)
update_paths = st.builds(
    UpdatePath,
    leaf_nodes(),
    st.lists(
        st.builds(
            UpdatePathNode,
            small,
            st.lists(st.builds(HPKECiphertext, small, small), max_size=2).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
)
commits = st.builds(
    Commit,
    st.lists(st.one_of(proposals, st.builds(ProposalRef, small)), max_size=3).map(tuple),
    st.none() | update_paths,
)
senders = st.one_of(
    st.builds(Sender, st.sampled_from([SenderType.MEMBER, SenderType.EXTERNAL]), u32),
    st.builds(
        Sender, st.sampled_from([SenderType.NEW_MEMBER_COMMIT, SenderType.NEW_MEMBER_PROPOSAL])
    ),
)
contents = st.one_of(small, proposals, commits)


@st.composite
def public_messages(draw: st.DrawFn) -> PublicMessage:
    fc = draw(st.builds(FramedContent, small, u64, senders, small, contents))
    tag = draw(small) if fc.content_type == ContentType.COMMIT else None
    mtag = draw(small) if fc.sender.sender_type == SenderType.MEMBER else None
    return PublicMessage(fc, FramedContentAuthData(draw(small), tag), mtag)


@st.composite
def group_infos(draw: st.DrawFn) -> GroupInfo:

    w = Writer().uint16(1).uint16(draw(u16)).opaque(draw(small)).uint64(draw(u64))
    w.opaque(draw(small)).opaque(draw(small))
    w.vector(draw(extensions), lambda wr, e: e.encode(wr))
    return GroupInfo(w.getvalue(), draw(extensions), draw(small), draw(u32), draw(small))


welcomes = st.builds(
    Welcome,
    u16,
    st.lists(
        st.builds(EncryptedGroupSecrets, small, st.builds(HPKECiphertext, small, small)),
        max_size=3,
    ).map(tuple),
    small,
)
private_messages = st.builds(
    PrivateMessage, small, u64, st.sampled_from(list(ContentType)), small, small, small
)
mls_messages = st.builds(
    MLSMessage,
    st.one_of(public_messages(), private_messages, welcomes, group_infos(), key_packages),
)


@st.composite
def ratchet_trees(draw: st.DrawFn) -> RatchetTree:
    n = draw(st.integers(1, 6))
    nodes: list[Any] = []
    for i in range(2 * n - 1):
        if i == 2 * n - 2:
            nodes.append(draw(leaf_nodes()))
        elif draw(st.booleans()):
            nodes.append(None)
        elif i % 2 == 0:
            nodes.append(draw(leaf_nodes()))
        else:
            nodes.append(
                draw(st.builds(ParentNode, small, small, st.lists(u32, max_size=3).map(tuple)))
            )
    return RatchetTree(tuple(nodes))


group_secrets = st.builds(
    GroupSecrets,
    small,
    st.none() | st.builds(PathSecret, small),
    st.lists(psk_ids, max_size=3).map(tuple),
)

STRATEGIES: dict[str, Any] = {
    "MLSMessage": mls_messages,
    "KeyPackage": key_packages,
    "Welcome": welcomes,
    "GroupInfo": group_infos(),
    "RatchetTree": ratchet_trees(),
    "Commit": commits,
    "Proposal": proposals,
    "LeafNode": leaf_nodes(),
    "GroupSecrets": group_secrets,
}


@pytest.mark.parametrize("name", list(STRATEGIES))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_round_trip(name: str, data: st.DataObject) -> None:
    value = data.draw(STRATEGIES[name])
    encoded = value.to_bytes()
    decoded = TOP_LEVEL[name].from_bytes(encoded)
    assert decoded == value
    assert decoded.to_bytes() == encoded


@SETTINGS
@given(content=contents, padding=st.integers(0, 40), sig=small, tag=small)
def test_private_content_round_trip(content: Any, padding: int, sig: bytes, tag: bytes) -> None:
    is_commit = isinstance(content, Commit)
    pmc = PrivateMessageContent(
        content, FramedContentAuthData(sig, tag if is_commit else None), padding
    )
    assert PrivateMessageContent.from_bytes(pmc.to_bytes(), pmc.content_type) == pmc


@SETTINGS
@given(data=st.binary(max_size=200), ct=st.sampled_from(list(ContentType)))
def test_private_content_random(data: bytes, ct: ContentType) -> None:
    try:
        value = PrivateMessageContent.from_bytes(data, ct)
    except DecodeError:
        return
    assert value.to_bytes() == data
