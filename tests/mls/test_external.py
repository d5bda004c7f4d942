"""External commits (RFC 9420 12.4.3.2): GroupInfo with external_pub, joining by external
commit in every suite, resync, and hostile external commits (forged, tampered, for the
wrong group or epoch, with forbidden proposals) that leave the members' state unchanged."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import (
    ApplicationMessage,
    Client,
    CommitApplied,
    CryptoError,
    DecodeError,
    ExternalCommitError,
    Group,
    GroupInactiveError,
    InboundCheck,
    MlsError,
    ProposalKind,
    SenderType,
    WrongEpochError,
    WrongGroupError,
)
from mls.crypto import SUITES
from mls.messages import (
    Add,
    AuthenticatedContent,
    Commit,
    ExtensionType,
    ExternalInit,
    FramedContentAuthData,
    GroupInfo,
    KeyPackage,
    MLSMessage,
    Proposal,
    ProposalRef,
    PublicMessage,
    Remove,
    WireFormat,
)
from mls.protection import sign_content

NOW = 1_700_000_000


def client(name: bytes, suite: int = 1) -> Client:
    seed = int.from_bytes(name, "big") + suite
    return Client(name, suite, rng=random.Random(seed).randbytes, clock=lambda: NOW)


def trio(suite: int = 1) -> tuple[Group, Group, Client]:
    a, b = client(b"alice", suite), client(b"bob", suite)
    ga = a.create_group(b"group")
    out = ga.add([b.key_package()])
    ga.merge_pending_commit()
    assert out.welcome is not None
    return ga, b.join(out.welcome), client(b"dave", suite)


def in_sync(*groups: Group) -> None:
    for g in groups[1:]:
        assert g.epoch == groups[0].epoch
        assert g.epoch_authenticator == groups[0].epoch_authenticator
        assert g.export_tree() == groups[0].export_tree()


@pytest.mark.parametrize("suite", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_join_by_external_commit(suite: int) -> None:
    ga, gb, dave = trio(suite)
    gi = ga.group_info()
    info = MLSMessage.from_bytes(gi).payload
    assert isinstance(info, GroupInfo)
    assert [e.extension_type for e in info.extensions] == [
        ExtensionType.RATCHET_TREE,
        ExtensionType.EXTERNAL_PUB,
    ]
    joined = dave.join_external(gi, authenticated_data=b"hello")
    msg = MLSMessage.from_bytes(joined.commit).payload
    assert isinstance(msg, PublicMessage) and msg.membership_tag is None
    for g in (ga, gb):
        ev = g.process(joined.commit)
        assert ev == CommitApplied(
            2, b"dave", (b"dave",), (), authenticated_data=b"hello", external=True
        )
    gd = joined.group
    in_sync(ga, gb, gd)
    assert gd.members == [b"alice", b"bob", b"dave"] and gd.leaf_index == 2
    # The joiner is a full member: it reads, writes and commits.
    assert ga.process(gd.encrypt(b"hi")) == ApplicationMessage(b"dave", b"hi", b"", 2)
    out = gd.update()
    ga.process(out.commit)
    gb.process(out.commit)
    gd.merge_pending_commit()
    in_sync(ga, gb, gd)


def test_joiner_takes_the_leftmost_free_leaf_and_tree_out_of_band() -> None:
    ga, gb, dave = trio()
    carol = client(b"carol")
    out = ga.add([carol.key_package()])
    gb.process(out.commit)
    ga.merge_pending_commit()
    out = ga.remove([b"bob"])  # leaf 1 is free now
    ga.merge_pending_commit()
    gi = ga.group_info(ratchet_tree=False)
    with pytest.raises(ExternalCommitError, match="no ratchet tree"):
        dave.join_external(gi)
    joined = dave.join_external(gi, ratchet_tree=ga.export_tree())
    assert joined.group.leaf_index == 1
    ga.process(joined.commit)
    in_sync(ga, joined.group)
    assert ga.members == [b"alice", b"dave", b"carol"]


def test_group_info_without_external_pub_cannot_be_used() -> None:
    ga, _, dave = trio()
    with pytest.raises(ExternalCommitError, match="external_pub"):
        dave.join_external(ga.group_info(with_external_pub=False))
    with pytest.raises(ExternalCommitError, match="external_pub"):
        dave.join_external(ga.group_info(False))
    with pytest.raises(DecodeError):
        dave.join_external(b"\x00\x01\x00\x04")
    with pytest.raises(ExternalCommitError, match="GroupInfo"):
        dave.join_external(ga.encrypt(b"not a group info"))


def test_tampered_group_info_is_refused() -> None:
    ga, _, dave = trio()
    gi = MLSMessage.from_bytes(ga.group_info()).payload
    assert isinstance(gi, GroupInfo)
    forged = replace(gi, signer=1)  # signature by alice claimed to be bob's
    with pytest.raises(ExternalCommitError, match="signature"):
        dave.join_external(MLSMessage(forged).to_bytes())
    with pytest.raises(MlsError):
        dave.join_external(MLSMessage(replace(gi, group_context=gi.group_context[:-1])).to_bytes())


def test_resync_replaces_our_old_leaf() -> None:
    ga, gb, _ = trio()
    bob_again = client(b"bob")  # same identity, state lost (a new signature key, too)
    with pytest.raises(ExternalCommitError, match="resync"):
        client(b"alice").join_external(ga.group_info())  # alice's own key is in the group
    joined = bob_again.join_external(ga.group_info(), resync=True)
    ev = ga.process(joined.commit)
    assert isinstance(ev, CommitApplied)
    assert (ev.committer, ev.added, ev.removed, ev.external) == (b"bob", (b"bob",), (b"bob",), True)
    old = gb.process(joined.commit)  # the lost state, if it is still around, is removed
    assert isinstance(old, CommitApplied) and old.removed_self and not gb.active
    in_sync(ga, joined.group)
    assert joined.group.leaf_index == 1 and ga.members == [b"alice", b"bob"]
    with pytest.raises(ExternalCommitError, match="no leaf"):
        client(b"erin").join_external(ga.group_info(), resync=True)


def test_check_hook_sees_the_joiner_and_can_refuse() -> None:
    ga, _, dave = trio()
    joined = dave.join_external(ga.group_info())
    seen: list[InboundCheck] = []

    def refuse(info: InboundCheck) -> None:
        seen.append(info)
        raise PermissionError("no external joins here")

    before = ga.to_bytes()
    with pytest.raises(PermissionError):
        ga.process(joined.commit, check=refuse)
    assert ga.to_bytes() == before
    (info,) = seen
    assert info.sender_type == SenderType.NEW_MEMBER_COMMIT
    assert (info.sender, info.sender_leaf, info.new_member) == (None, None, b"dave")
    assert [v.kind for v in info.proposals] == [ProposalKind.EXTERNAL_INIT]
    assert info.proposals[0].proposer is None
    assert isinstance(ga.process(joined.commit), CommitApplied)


def test_inactive_group_gives_no_group_info() -> None:
    ga, gb, _ = trio()
    out = ga.remove([b"bob"])
    gb.process(out.commit)
    with pytest.raises(GroupInactiveError):
        gb.group_info()


# -- hostile external commits ------------------------------------------------------------


def _unchanged_after(
    g: Group, message: bytes, error: type[Exception], match: str | None = None
) -> None:
    before = g.to_bytes()
    with pytest.raises(error, match=match):
        g.process(message)
    assert g.to_bytes() == before


def _resigned(commit_msg: bytes, signer: Client, group: Group, body: Commit | None = None) -> bytes:
    """The external commit with its content replaced by ``body`` (default: unchanged) and
    signed again with ``signer``'s key; the confirmation tag is left as it was."""
    pub = MLSMessage.from_bytes(commit_msg).payload
    assert isinstance(pub, PublicMessage)
    content = pub.content if body is None else replace(pub.content, content=body)
    state = group.state
    wire = WireFormat.PUBLIC_MESSAGE
    sig = sign_content(state.suite, wire, content, signer._signing_key, state.context)
    auth = FramedContentAuthData(sig, pub.auth.confirmation_tag)
    return MLSMessage(PublicMessage(content, auth, None)).to_bytes()


def _commit_of(message: bytes) -> Commit:
    pub = MLSMessage.from_bytes(message).payload
    assert isinstance(pub, PublicMessage) and isinstance(pub.content.content, Commit)
    return pub.content.content


def test_forged_external_commit_signature() -> None:
    ga, _, dave = trio()
    joined = dave.join_external(ga.group_info())
    mallory = client(b"mallory")
    forged = _resigned(joined.commit, mallory, ga)  # not the path leaf's key
    _unchanged_after(ga, forged, CryptoError, "signature")
    # Flipping any byte of the genuine commit fails as well, never with another error.
    r = random.Random(3)
    for _ in range(40):
        raw = bytearray(joined.commit)
        raw[r.randrange(4, len(raw))] ^= 1 << r.randrange(8)
        before = ga.to_bytes()
        with pytest.raises(MlsError):
            ga.process(bytes(raw))
        assert ga.to_bytes() == before
    assert isinstance(ga.process(joined.commit), CommitApplied)


def test_external_commit_with_a_wrong_init_secret() -> None:
    """Validly signed by the joiner, but its ExternalInit does not match the secrets it
    used: the confirmation tag fails."""
    ga, _, dave = trio()
    joined = dave.join_external(ga.group_info())
    commit = _commit_of(joined.commit)
    other_kem = client(b"x").join_external(ga.group_info())
    other_init = _commit_of(other_kem.commit).proposals[0]
    body = replace(commit, proposals=(other_init,))
    forged = _resigned(joined.commit, dave, ga, body)
    _unchanged_after(ga, forged, CryptoError, "confirmation")
    garbage_init = Proposal(ExternalInit(b"\x01" * 32))
    forged = _resigned(joined.commit, dave, ga, replace(commit, proposals=(garbage_init,)))
    _unchanged_after(ga, forged, MlsError)


def test_external_commit_for_the_wrong_group_or_epoch() -> None:
    ga, gb, dave = trio()
    other = client(b"zed").create_group(b"other group")
    joined_other = dave.join_external(other.group_info())
    _unchanged_after(ga, joined_other.commit, WrongGroupError)
    # A GroupInfo of an epoch that has ended.
    stale_info = ga.group_info()
    out = ga.update()
    gb.process(out.commit)
    ga.merge_pending_commit()
    stale = dave.join_external(stale_info)
    _unchanged_after(ga, stale.commit, WrongEpochError)
    # One GroupInfo, two joiners: the second commit is for an epoch that just ended.
    info = ga.group_info()
    first = dave.join_external(info)
    second = client(b"erin").join_external(info)
    ga.process(first.commit)
    _unchanged_after(ga, second.commit, WrongEpochError)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda c, kp: (*c.proposals, Proposal(Add(kp))), "NEW_MEMBER_COMMIT cannot send"),
        (lambda c, kp: (*c.proposals, c.proposals[0]), "exactly one ExternalInit"),
        (lambda c, kp: (), "exactly one ExternalInit"),
        (lambda c, kp: (*c.proposals, Proposal(Remove(1))), "joiner's old leaf"),
        (lambda c, kp: (*c.proposals, ProposalRef(b"\x01" * 32)), "by reference"),
    ],
    ids=["add", "two-inits", "no-init", "remove-other", "by-ref"],
)
def test_external_commit_with_forbidden_proposals(make: object, match: str) -> None:
    ga, _, dave = trio()
    joined = dave.join_external(ga.group_info())
    commit = _commit_of(joined.commit)
    kp = MLSMessage.from_bytes(client(b"erin").key_package()).payload
    assert isinstance(kp, KeyPackage)
    body = replace(commit, proposals=make(commit, kp))  # type: ignore[operator]
    forged = _resigned(joined.commit, dave, ga, body)
    _unchanged_after(ga, forged, MlsError, match)


def test_external_commit_without_a_path() -> None:
    ga, _, dave = trio()
    joined = dave.join_external(ga.group_info())
    commit = _commit_of(joined.commit)
    pub = MLSMessage.from_bytes(joined.commit).payload
    assert isinstance(pub, PublicMessage)
    content = replace(pub.content, content=replace(commit, path=None))
    ac = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, pub.auth)
    msg = MLSMessage(PublicMessage(ac.content, ac.auth, None)).to_bytes()
    _unchanged_after(ga, msg, MlsError, "path")


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_join_external_garbage_only_raises_mls_error(data: bytes) -> None:
    with pytest.raises(MlsError):
        client(b"dave").join_external(data)


def test_membership_after_external_join_with_check_allowing_it() -> None:
    ga, gb, dave = trio()
    joined = dave.join_external(ga.group_info())
    kinds: list[ProposalKind] = []
    ga.process(joined.commit, check=lambda i: kinds.extend(v.kind for v in i.proposals))
    assert kinds == [ProposalKind.EXTERNAL_INIT]
    gb.process(joined.commit)
    out = gb.remove([b"dave"])
    ga.process(out.commit)
    ev = joined.group.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.removed_self
