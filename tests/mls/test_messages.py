"""RFC 9420 wire structs: messages.json byte for byte, every variant, strict rejection."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

from mls import tree_math as tm
from mls.codec import Reader, Writer, decode_exact
from mls.errors import DecodeError
from mls.messages import (
    Add,
    AuthenticatedContent,
    Capabilities,
    Commit,
    ContentType,
    Credential,
    CredentialType,
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
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    Proposal,
    ProposalRef,
    PSKType,
    PublicMessage,
    RatchetTree,
    ReInit,
    Remove,
    ResumptionPSKUsage,
    Sender,
    SenderData,
    SenderDataAAD,
    SenderType,
    UnknownProposal,
    Update,
    UpdatePath,
    UpdatePathNode,
    Welcome,
    WireFormat,
)
from mls.messages.common import ExtensionType
from mls.messages.extensions import (
    ApplicationId,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    RequiredCapabilities,
    find_extension,
)
from mls.messages.framing import (
    confirmed_transcript_hash_input,
    framed_content_tbs,
    interim_transcript_hash_input,
)
from mls.messages.proposals import ProposalBody, ProposalOrRef
from mls.messages.tree import leaf_tree_hash_input, parent_hash_input, parent_tree_hash_input
from mls.messages.welcome import read_group_context_bytes
from tests.vectors import Variants, load_vectors, vector_params

VECTOR = "mls/messages.json"

# Field of messages.json -> struct, plus (wire format, content type) expected for MLSMessages.
FIELDS: dict[str, tuple[Any, WireFormat | None, ContentType | None]] = {
    "mls_welcome": (MLSMessage, WireFormat.WELCOME, None),
    "mls_group_info": (MLSMessage, WireFormat.GROUP_INFO, None),
    "mls_key_package": (MLSMessage, WireFormat.KEY_PACKAGE, None),
    "ratchet_tree": (RatchetTree, None, None),
    "group_secrets": (GroupSecrets, None, None),
    "add_proposal": (Add, None, None),
    "update_proposal": (Update, None, None),
    "remove_proposal": (Remove, None, None),
    "pre_shared_key_proposal": (PreSharedKey, None, None),
    "re_init_proposal": (ReInit, None, None),
    "external_init_proposal": (ExternalInit, None, None),
    "group_context_extensions_proposal": (GroupContextExtensions, None, None),
    "commit": (Commit, None, None),
    "public_message_application": (
        MLSMessage,
        WireFormat.PUBLIC_MESSAGE,
        ContentType.APPLICATION,
    ),
    "public_message_proposal": (MLSMessage, WireFormat.PUBLIC_MESSAGE, ContentType.PROPOSAL),
    "public_message_commit": (MLSMessage, WireFormat.PUBLIC_MESSAGE, ContentType.COMMIT),
    "private_message": (MLSMessage, WireFormat.PRIVATE_MESSAGE, None),
}


def _fields(i: int, case: dict[str, str]) -> list[tuple[str, tuple[str]]]:
    assert set(case) == set(FIELDS), f"unexpected fields in case {i}"
    return [(f, (f,)) for f in FIELDS]


@pytest.mark.parametrize(("case", "field"), vector_params(VECTOR, variants=_fields, width=2))
def test_messages_vector(case: dict[str, str], field: str) -> None:
    data = bytes.fromhex(case[field])
    cls, wire_format, content_type = FIELDS[field]
    value = cls.from_bytes(data)
    assert value.to_bytes() == data
    assert cls.from_bytes(value.to_bytes()) == value
    if wire_format is not None:
        assert value.wire_format == wire_format and value.version == 1
    if content_type is not None:
        assert value.payload.content.content_type == content_type


def _vector_case(index: int = 0) -> dict[str, str]:
    cases: list[dict[str, str]] = load_vectors(VECTOR)
    return cases[index]


def test_signed_tbs_prefixes() -> None:
    case = _vector_case()
    gi = MLSMessage.from_bytes(bytes.fromhex(case["mls_group_info"])).payload
    assert isinstance(gi, GroupInfo)
    assert gi.to_bytes() == gi.tbs() + Writer().opaque(gi.signature).getvalue()
    assert gi.group_context[:2] == b"\x00\x01"
    kp = MLSMessage.from_bytes(bytes.fromhex(case["mls_key_package"])).payload
    assert isinstance(kp, KeyPackage)
    assert kp.to_bytes() == kp.tbs() + Writer().opaque(kp.signature).getvalue()
    leaf = kp.leaf_node
    assert leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE
    assert leaf.to_bytes() == leaf.tbs() + Writer().opaque(leaf.signature).getvalue()
    upd = Update.from_bytes(bytes.fromhex(case["update_proposal"])).leaf_node
    assert upd.leaf_node_source == LeafNodeSource.UPDATE
    body = upd.to_bytes()[: -len(Writer().opaque(upd.signature).getvalue())]
    assert upd.tbs(b"gid", 7) == body + b"\x03gid\x00\x00\x00\x07"
    with pytest.raises(ValueError):
        upd.tbs()


# ---- constructed values for variants the vectors do not contain ----

LIFETIME = Lifetime(0, (1 << 64) - 1)
CAPS = Capabilities((1,), (1, 3, 0x0A0A), (0x1A1A,), (0xFFF0,), (1, 2, 0x2A2A))


def leaf(
    source: LeafNodeSource = LeafNodeSource.KEY_PACKAGE, cred: Credential | None = None
) -> LeafNode:
    return LeafNode(
        encryption_key=b"E" * 32,
        signature_key=b"S" * 32,
        credential=cred or Credential.basic(b"alice"),
        capabilities=CAPS,
        leaf_node_source=source,
        extensions=(Extension(0x3A3A, b""), Extension(0xF000, b"\x01\x02")),
        signature=b"sig",
        lifetime=LIFETIME if source == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=b"ph" if source == LeafNodeSource.COMMIT else None,
    )


def key_package() -> KeyPackage:
    return KeyPackage(1, b"I" * 32, leaf(), (Extension(5, b"\x00"),), b"kpsig")


PSK_EXT = PreSharedKeyID.external(b"id", b"nonce")
PSK_RES = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"g", 42, b"n")
ALL_PROPOSALS: list[ProposalBody] = [
    Add(key_package()),
    Update(leaf(LeafNodeSource.UPDATE)),
    Remove(3),
    PreSharedKey(PSK_EXT),
    PreSharedKey(PSK_RES),
    ReInit(b"new", 0x7777, 3, (Extension(1, b"app"),)),
    ExternalInit(b"kem"),
    GroupContextExtensions((Extension(2, b""), Extension(0xBABA, b"x"))),
    UnknownProposal(0x0A0A, b"grease body"),
]


def _rt(value: Any) -> None:
    data = value.to_bytes()
    again = type(value).from_bytes(data)
    assert again == value
    assert again.to_bytes() == data


@pytest.mark.parametrize(
    "cred",
    [
        Credential.basic(b"bob"),
        Credential.x509((b"leaf-cert", b"ca-cert")),
        Credential.x509(()),
        Credential(0x5A5A, data=b"custom"),
    ],
    ids=["basic", "x509", "x509-empty", "unknown"],
)
def test_credentials(cred: Credential) -> None:
    _rt(cred)
    _rt(leaf(cred=cred))


@pytest.mark.parametrize("source", list(LeafNodeSource))
def test_leaf_sources(source: LeafNodeSource) -> None:
    _rt(leaf(source))


def test_leaf_source_fields_checked() -> None:
    with pytest.raises(ValueError):
        replace(leaf(), lifetime=None)
    with pytest.raises(ValueError):
        replace(leaf(LeafNodeSource.UPDATE), parent_hash=b"x")


@pytest.mark.parametrize("body", ALL_PROPOSALS, ids=lambda b: type(b).__name__)
def test_proposals(body: Any) -> None:
    prop = Proposal(body)
    _rt(prop)
    assert prop.proposal_type == body.proposal_type
    assert prop.to_bytes()[:2] == body.proposal_type.to_bytes(2, "big")
    if not isinstance(body, UnknownProposal):
        _rt(body)


def test_unknown_proposal_not_known_type() -> None:
    with pytest.raises(ValueError):
        UnknownProposal(1, b"")


def _commit() -> Commit:
    path = UpdatePath(
        leaf(LeafNodeSource.COMMIT),
        (
            UpdatePathNode(b"pk1", (HPKECiphertext(b"k", b"c"),)),
            UpdatePathNode(b"pk2", ()),
        ),
    )
    proposals: list[ProposalOrRef] = [Proposal(b) for b in ALL_PROPOSALS]
    proposals.append(ProposalRef(b"r" * 32))
    return Commit(tuple(proposals), path)


def test_commit_variants() -> None:
    _rt(_commit())
    _rt(Commit())


SENDERS = [
    Sender.member(5),
    Sender.external(2),
    Sender.new_member_proposal(),
    Sender.new_member_commit(),
]


@pytest.mark.parametrize("sender", SENDERS, ids=lambda s: s.sender_type.name)
@pytest.mark.parametrize(
    "content",
    [b"hello", Proposal(Remove(1)), Commit()],
    ids=["application", "proposal", "commit"],
)
def test_public_message_variants(sender: Sender, content: Any) -> None:
    _rt(sender)
    fc = FramedContent(b"group", 9, sender, b"aad", content)
    tag = b"ct" if isinstance(content, Commit) else None
    auth = FramedContentAuthData(b"signature", tag)
    member_tag = b"mt" if sender.sender_type == SenderType.MEMBER else None
    msg = MLSMessage(PublicMessage(fc, auth, member_tag))
    _rt(msg)
    _rt(AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, fc, auth))
    wf = WireFormat.PUBLIC_MESSAGE
    ctx_needed = sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)
    tbs = framed_content_tbs(wf, fc, b"CTX" if ctx_needed else None)
    assert tbs == b"\x00\x01\x00\x01" + fc.to_bytes() + (b"CTX" if ctx_needed else b"")
    with pytest.raises(ValueError):
        framed_content_tbs(wf, fc, None if ctx_needed else b"CTX")
    cth = confirmed_transcript_hash_input(wf, fc, b"signature")
    assert cth == b"\x00\x01" + fc.to_bytes() + b"\x09signature"
    with pytest.raises(ValueError):
        PublicMessage(fc, auth, None if member_tag else b"x")
    with pytest.raises(ValueError):
        PublicMessage(fc, FramedContentAuthData(b"s", None if tag else b"t"), member_tag)


def test_new_member_sender_has_no_index() -> None:
    with pytest.raises(ValueError):
        Sender(SenderType.NEW_MEMBER_COMMIT, 1)


@pytest.mark.parametrize("content", [b"data", Proposal(Remove(0)), _commit()])
def test_private_message_pieces(content: Any) -> None:
    is_commit = isinstance(content, Commit)
    pmc = PrivateMessageContent(
        content, FramedContentAuthData(b"s", b"t" if is_commit else None), 7
    )
    data = pmc.to_bytes()
    assert data.endswith(bytes(7))
    assert PrivateMessageContent.from_bytes(data, pmc.content_type) == pmc
    bad = data[:-1] + b"\x01"
    with pytest.raises(DecodeError):
        PrivateMessageContent.from_bytes(bad, pmc.content_type)
    pm = PrivateMessage(b"g", 1, pmc.content_type, b"aad", b"esd", b"ct")
    _rt(MLSMessage(pm))
    _rt(SenderData(1, 2, b"rgrd"))
    _rt(SenderDataAAD(b"g", 1, ContentType.APPLICATION))
    _rt(PrivateContentAAD(b"g", 1, ContentType.COMMIT, b"aad"))
    with pytest.raises(ValueError):
        SenderData(1, 2, b"abc")


def test_welcome_group_secrets_group_info() -> None:
    gs = GroupSecrets(b"joiner", PathSecret(b"ps"), (PSK_EXT, PSK_RES))
    _rt(gs)
    _rt(GroupSecrets(b"joiner"))
    assert "joiner" not in repr(gs) and "ps'" not in repr(gs)
    w = Welcome(3, (EncryptedGroupSecrets(b"ref", HPKECiphertext(b"k", b"c")),), b"egi")
    _rt(MLSMessage(w))
    ctx = Writer().uint16(1).uint16(1).opaque(b"g").uint64(3).opaque(b"th").opaque(b"cth")
    ctx.vector((Extension(4, b"pub"),), lambda wr, e: e.encode(wr))
    gi = GroupInfo(ctx.getvalue(), (Extension(2, b""),), b"tag", 4, b"sig")
    _rt(MLSMessage(gi))
    _rt(MLSMessage(key_package()))
    wrong_version = GroupInfo(b"\x00\x02" + ctx.getvalue()[2:], (), b"", 0, b"")
    with pytest.raises(DecodeError):
        GroupInfo.from_bytes(wrong_version.to_bytes())


def test_ratchet_tree_shape() -> None:
    p = ParentNode(b"pk", b"ph", (0, 2, 0xFFFFFFFF))
    nodes = [leaf(), p, None, None, leaf(LeafNodeSource.COMMIT), None, None]
    tree = RatchetTree.from_nodes(nodes)
    assert len(tree.nodes) == 5 and tree.n_leaves == 4 and tree.padded() == nodes
    _rt(tree)
    _rt(p)
    assert RatchetTree((leaf(),)).n_leaves == 1
    for bad in [(), (leaf(), None), (leaf(), None, None), (p,), (leaf(), leaf(), leaf())]:
        with pytest.raises(ValueError):
            RatchetTree(bad)
    # Same shapes arriving as bytes raise DecodeError.
    for body in [b"", b"\x01\x01" + p.to_bytes(), b"\x00"]:
        data = Writer().opaque(body).getvalue()
        with pytest.raises(DecodeError):
            RatchetTree.from_bytes(data)


def test_hash_inputs() -> None:
    lf = leaf()
    assert leaf_tree_hash_input(3, lf) == b"\x01\x00\x00\x00\x03\x01" + lf.to_bytes()
    assert leaf_tree_hash_input(3, None) == b"\x01\x00\x00\x00\x03\x00"
    p = ParentNode(b"pk")
    assert parent_tree_hash_input(p, b"L", b"R") == b"\x02\x01" + p.to_bytes() + b"\x01L\x01R"
    assert parent_tree_hash_input(None, b"", b"") == b"\x02\x00\x00\x00"
    assert parent_hash_input(b"a", b"bb", b"c") == b"\x01a\x02bb\x01c"
    assert interim_transcript_hash_input(b"tag") == b"\x03tag"


# ---- strict rejection ----


def test_public_offsets() -> None:
    # The patch offsets used below point at the sender type and content type bytes.
    data = _public()
    assert data[14] == SenderType.MEMBER and data[20] == ContentType.APPLICATION
    assert data[21:25] == b"\x03app"


def _public(sender: Sender = SENDERS[0]) -> bytes:
    fc = FramedContent(b"g", 1, sender, b"", b"app")
    tag = b"m" if sender.sender_type == SenderType.MEMBER else None
    return MLSMessage(PublicMessage(fc, FramedContentAuthData(b"s"), tag)).to_bytes()


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


REJECTS: list[tuple[str, Any, bytes]] = [
    ("version-0", MLSMessage, _patch(_public(), 0, b"\x00\x00")),
    ("version-2", MLSMessage, _patch(_public(), 0, b"\x00\x02")),
    ("wire-format-0", MLSMessage, _patch(_public(), 2, b"\x00\x00")),
    ("wire-format-6", MLSMessage, _patch(_public(), 2, b"\x00\x06")),
    ("wire-format-grease", MLSMessage, _patch(_public(), 2, b"\x0a\x0a")),
    ("sender-type-0", MLSMessage, _patch(_public(), 14, b"\x00")),
    ("sender-type-5", MLSMessage, _patch(_public(), 14, b"\x05")),
    ("content-type-0", MLSMessage, _patch(_public(), 20, b"\x00")),
    ("content-type-4", MLSMessage, _patch(_public(), 20, b"\x04")),
    ("trailing-byte", MLSMessage, _public() + b"\x00"),
    ("truncated", MLSMessage, _public()[:-1]),
    ("kp-version-2", KeyPackage, _patch(key_package().to_bytes(), 0, b"\x00\x02")),
    ("commit-optional-2", Commit, b"\x00\x02"),
    ("proposal-or-ref-0", Commit, b"\x03\x00\x00\x01\x00"),
    ("proposal-or-ref-3", Commit, b"\x03\x03\x00\x01\x00"),
    ("proposal-type-0", Proposal, b"\x00\x00\x00"),
    ("psk-type-0", PreSharedKeyID, b"\x00\x00\x00"),
    ("psk-type-3", PreSharedKeyID, b"\x03\x00\x00"),
    ("psk-usage-0", PreSharedKeyID, b"\x02\x00\x00" + bytes(8) + b"\x00"),
    ("psk-usage-4", PreSharedKeyID, b"\x02\x04\x00" + bytes(8) + b"\x00"),
    ("caps-odd-length", Capabilities, b"\x01\x00\x00\x00\x00\x00"),
    ("parent-odd-unmerged", ParentNode, b"\x00\x00\x03\x00\x00\x00"),
    ("node-type-3", RatchetTree, b"\x02\x01\x03"),
    ("group-secrets-optional-2", GroupSecrets, b"\x00\x02\x00"),
    ("sender-data-short", SenderData, bytes(11)),
    ("private-content-type-4", PrivateMessage, b"\x00" + bytes(8) + b"\x04\x00\x00\x00"),
    ("auth-content-welcome", AuthenticatedContent, b"\x00\x03"),
]


@pytest.mark.parametrize(("cls", "data"), [pytest.param(c, d, id=n) for n, c, d in REJECTS])
def test_rejects(cls: Any, data: bytes) -> None:
    with pytest.raises(DecodeError):
        cls.from_bytes(data)


@pytest.mark.parametrize("source", [0, 4, 255])
def test_leaf_source_rejected(source: int) -> None:
    data = bytearray(leaf().to_bytes())
    # Offset of leaf_node_source: after keys, credential and capabilities.
    w = Writer().opaque(b"E" * 32).opaque(b"S" * 32)
    Credential.basic(b"alice").encode(w)
    CAPS.encode(w)
    offset = len(w.getvalue())
    assert data[offset] == LeafNodeSource.KEY_PACKAGE
    data[offset] = source
    with pytest.raises(DecodeError):
        LeafNode.from_bytes(bytes(data))


def test_grease_code_points_round_trip() -> None:
    for ext_type in (0x0A0A, 0xFAFA, 0xFFFF, 0):
        _rt(Extension(ext_type, b"x"))
    assert Credential.from_bytes(b"\xea\xea\x02ab").credential_type == 0xEAEA
    assert Credential.from_bytes(b"\x00\x01\x00") == Credential(CredentialType.BASIC)
    prop = Proposal.from_bytes(b"\x4a\x4a\x01z")
    assert prop.body == UnknownProposal(0x4A4A, b"z")


def test_mlsmessage_reader_positions() -> None:
    data = _public()
    r = Reader(data + b"rest")
    MLSMessage.decode(r)
    assert r.remaining == 4
    assert PSKType(1) == PSKType.EXTERNAL


def test_duplicate_extension_types_rejected() -> None:
    ok = GroupContextExtensions((Extension(2, b""), Extension(3, b"")))
    dup = GroupContextExtensions((Extension(0x0A0A, b""), Extension(0x0A0A, b"x")))
    _rt(ok)
    with pytest.raises(DecodeError):
        GroupContextExtensions.from_bytes(dup.to_bytes())
    with pytest.raises(DecodeError):
        KeyPackage.from_bytes(replace(key_package(), extensions=dup.extensions).to_bytes())


def test_typed_extensions() -> None:
    senders = ExternalSenders(
        (ExternalSender(b"sk", Credential.basic(b"ds")), ExternalSender(b"s2", Credential.x509(())))
    )
    req = RequiredCapabilities((5, 0x0A0A), (7,), (1,))
    bodies: list[Any] = [senders, req, ExternalPub(b"pub"), ApplicationId(b"app")]
    for body in bodies:
        _rt(body)
        ext = body.to_extension()
        assert type(body).from_bytes(ext.extension_data) == body
    exts = tuple(b.to_extension() for b in bodies)
    found = find_extension(exts, ExtensionType.EXTERNAL_PUB)
    assert found is not None and ExternalPub.from_bytes(found.extension_data).external_pub == b"pub"
    assert find_extension(exts, ExtensionType.RATCHET_TREE) is None
    assert req.to_extension().extension_type == ExtensionType.REQUIRED_CAPABILITIES
    assert senders.to_extension().extension_type == ExtensionType.EXTERNAL_SENDERS


def test_ratchet_tree_extension_in_group_info() -> None:
    case = _vector_case()
    gi = MLSMessage.from_bytes(bytes.fromhex(case["mls_group_info"])).payload
    assert isinstance(gi, GroupInfo)
    tree_ext = find_extension(gi.extensions, ExtensionType.RATCHET_TREE)
    assert tree_ext is not None
    tree = RatchetTree.from_bytes(tree_ext.extension_data)
    assert tree.to_bytes() == tree_ext.extension_data
    pub_ext = find_extension(gi.extensions, ExtensionType.EXTERNAL_PUB)
    assert pub_ext is not None
    assert ExternalPub.from_bytes(pub_ext.extension_data).to_bytes() == pub_ext.extension_data


# ---- every serialized struct in the other mlswg vector files ----


def _read_group_context(data: bytes) -> bytes:
    return decode_exact(data, read_group_context_bytes)


def _structs(name: str, case: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(label, decoder class or function, hex) for each wire struct in one vector case."""
    out: list[tuple[str, Any, str]] = []
    if name == "welcome.json":
        out += [("key_package", MLSMessage, case["key_package"])]
        out += [("welcome", MLSMessage, case["welcome"])]
    elif name == "tree-validation.json":
        out += [("tree", RatchetTree, case["tree"])]
    elif name == "treekem.json":
        out += [("ratchet_tree", RatchetTree, case["ratchet_tree"])]
        out += [("update_path", UpdatePath, u["update_path"]) for u in case["update_paths"]]
    elif name == "tree-operations.json":
        out += [("proposal", Proposal, case["proposal"])]
        out += [(k, RatchetTree, case[k]) for k in ("tree_before", "tree_after")]
    elif name.startswith("passive-client-"):
        out += [(k, MLSMessage, case[k]) for k in ("key_package", "welcome")]
        if case["ratchet_tree"] is not None:
            out += [("ratchet_tree", RatchetTree, case["ratchet_tree"])]
        for epoch in case["epochs"]:
            out += [("proposal", MLSMessage, p) for p in epoch["proposals"]]
            out += [("commit", MLSMessage, epoch["commit"])]
    elif name == "message-protection.json":
        out += [("proposal", Proposal, case["proposal"]), ("commit", Commit, case["commit"])]
        for k in ("proposal_pub", "commit_pub", "proposal_priv", "commit_priv", "application_priv"):
            out += [(k, MLSMessage, case[k])]
    elif name == "transcript-hashes.json":
        out += [("authenticated_content", AuthenticatedContent, case["authenticated_content"])]
    elif name == "key-schedule.json":
        out += [("group_context", None, e["group_context"]) for e in case["epochs"]]
    return out


CORPUS = [
    "welcome.json",
    "tree-validation.json",
    "treekem.json",
    "tree-operations.json",
    "passive-client-welcome.json",
    "passive-client-handling-commit.json",
    "passive-client-random.json",
    "message-protection.json",
    "transcript-hashes.json",
    "key-schedule.json",
]


def _named(name: str) -> Variants:
    # The file name rides along after each case: _structs reads each file's own layout.
    return lambda i, case: [("", (name,))]


CORPUS_CASES = [
    p for name in CORPUS for p in vector_params(f"mls/{name}", variants=_named(name), width=2)
]


@pytest.mark.parametrize(("case", "name"), CORPUS_CASES)
def test_vector_corpus_round_trip(case: dict[str, Any], name: str) -> None:
    structs = _structs(name, case)
    assert structs, "no structs found: the vector layout changed"
    for label, cls, hexdata in structs:
        data = bytes.fromhex(hexdata)
        if cls is None:
            assert _read_group_context(data) == data, label
            continue
        value = cls.from_bytes(data)
        assert value.to_bytes() == data, label


# Suite -> hash, enough to recompute tree hashes from our TreeHashInput encodings.
_SUITE_HASH = {1: "sha256", 2: "sha256", 3: "sha256", 4: "sha512", 5: "sha512", 6: "sha512"}
_SUITE_HASH[7] = "sha384"


TREES = vector_params(
    "mls/tree-validation.json", lambda i, c: f"tree-validation.json[{i}]-tree_hashes"
)


@pytest.mark.parametrize("case", TREES)
def test_tree_hash_inputs_match_vectors(case: dict[str, Any]) -> None:
    """Tree hashes recomputed over leaf/parent_tree_hash_input equal the vector's, per node."""
    tree = RatchetTree.from_bytes(bytes.fromhex(case["tree"]))
    nodes = tree.padded()
    n = tree.n_leaves
    algo = _SUITE_HASH[case["cipher_suite"]]
    hashes: dict[int, bytes] = {}

    def th(x: int) -> bytes:
        node = nodes[x]
        if tm.is_leaf(x):
            assert node is None or isinstance(node, LeafNode)
            data = leaf_tree_hash_input(tm.node_to_leaf(x), node)
        else:
            assert node is None or isinstance(node, ParentNode)
            data = parent_tree_hash_input(node, th(tm.left(x)), th(tm.right(x)))
        hashes[x] = hashlib.new(algo, data).digest()
        return hashes[x]

    th(tm.root(n))
    assert [hashes[x].hex() for x in range(len(nodes))] == case["tree_hashes"]


@pytest.mark.parametrize("case", vector_params("mls/transcript-hashes.json"))
def test_transcript_hash_inputs_match_vectors(case: dict[str, Any]) -> None:
    ac = AuthenticatedContent.from_bytes(bytes.fromhex(case["authenticated_content"]))
    assert ac.auth.confirmation_tag is not None
    algo = _SUITE_HASH[case["cipher_suite"]]
    cth_input = confirmed_transcript_hash_input(ac.wire_format, ac.content, ac.auth.signature)
    before = bytes.fromhex(case["interim_transcript_hash_before"])
    confirmed = hashlib.new(algo, before + cth_input).digest()
    assert confirmed.hex() == case["confirmed_transcript_hash_after"]
    interim = hashlib.new(algo, confirmed + interim_transcript_hash_input(ac.auth.confirmation_tag))
    assert interim.hexdigest() == case["interim_transcript_hash_after"]


def _verify(suite: int, pub: bytes, sig: bytes, msg: bytes) -> None:
    """Plain signature check with `cryptography`, only to validate our TBS byte layout."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    if suite in (1, 3):
        ed25519.Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    elif suite in (4, 6):
        ed448.Ed448PublicKey.from_public_bytes(pub).verify(sig, msg)
    else:
        curve, digest = {
            2: (ec.SECP256R1(), hashes.SHA256()),
            5: (ec.SECP521R1(), hashes.SHA512()),
            7: (ec.SECP384R1(), hashes.SHA384()),
        }[suite]
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve, pub)
        key.verify(sig, msg, ec.ECDSA(digest))


def _public_fields(i: int, case: dict[str, Any]) -> list[tuple[str, tuple[str]]]:
    return [(k, (k,)) for k in ("proposal_pub", "commit_pub")]


@pytest.mark.parametrize(
    ("case", "field"),
    vector_params("mls/message-protection.json", variants=_public_fields, width=2),
)
def test_framed_content_tbs_signature(case: dict[str, Any], field: str) -> None:
    """The vector's PublicMessage signature verifies over our FramedContentTBS bytes."""
    msg = MLSMessage.from_bytes(bytes.fromhex(case[field]))
    assert isinstance(msg.payload, PublicMessage)
    pm = msg.payload
    ctx = Writer().uint16(1).uint16(case["cipher_suite"]).opaque(bytes.fromhex(case["group_id"]))
    ctx.uint64(case["epoch"]).opaque(bytes.fromhex(case["tree_hash"]))
    ctx.opaque(bytes.fromhex(case["confirmed_transcript_hash"])).opaque(b"")
    tbs = framed_content_tbs(msg.wire_format, pm.content, ctx.getvalue())
    sign_content = Writer().opaque(b"MLS 1.0 FramedContentTBS").opaque(tbs).getvalue()
    pub = bytes.fromhex(case["signature_pub"])
    _verify(case["cipher_suite"], pub, pm.auth.signature, sign_content)
    with pytest.raises(InvalidSignature):
        _verify(case["cipher_suite"], pub, pm.auth.signature, sign_content + b"\x00")
