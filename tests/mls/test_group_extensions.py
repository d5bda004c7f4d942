"""Group-context extensions end to end: groups created with them, GroupContextExtensions
commits and proposals, the support checks of RFC 9420 7.2 / 12.1.7 / 13.4 on both the
committer's and the receiver's side, and commits' authenticated_data."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

import mls.commit
import mls.group
from mls import (
    Client,
    CommitApplied,
    CommitError,
    CryptoError,
    ExtensionsError,
    Group,
    MlsError,
    ProposalError,
    ProposalMessage,
    WireFormat,
)
from mls.messages import (
    AuthenticatedContent,
    Commit,
    GroupContextExtensions,
    KeyPackage,
    MLSMessage,
    Proposal,
    PublicMessage,
    RequiredCapabilities,
)
from mls.protection.public import membership_tag

NOW = 1_700_000_000
APP_EXT = 0xFF01  # the channel layer's kind of extension: private-use range
OTHER_EXT = 0xFF02


def client(name: bytes, exts: tuple[int, ...] = (APP_EXT,), **kw: object) -> Client:
    seed = int.from_bytes(name, "big")
    return Client(
        name,
        rng=random.Random(seed).randbytes,
        clock=lambda: NOW,
        extensions_supported=exts,
        **kw,  # type: ignore[arg-type]
    )


def join(committer: Group, joiner: Client, *others: Group) -> Group:
    out = committer.add([joiner.key_package()])
    for g in others:
        assert isinstance(g.process(out.commit), CommitApplied)
    committer.merge_pending_commit()
    assert out.welcome is not None
    return joiner.join(out.welcome)


def in_sync(*groups: Group) -> None:
    for g in groups[1:]:
        assert g.epoch == groups[0].epoch
        assert g.epoch_authenticator == groups[0].epoch_authenticator
        assert g.extensions == groups[0].extensions


def test_capabilities_list_supported_types_only_once_and_no_defaults() -> None:
    c = client(b"alice", (OTHER_EXT, APP_EXT, 3, APP_EXT))
    assert c.extensions_supported == (APP_EXT, OTHER_EXT)
    kp = MLSMessage.from_bytes(c.key_package()).payload
    assert isinstance(kp, KeyPackage)
    assert kp.leaf_node.capabilities.extensions == (APP_EXT, OTHER_EXT)
    with pytest.raises(ValueError):
        client(b"x", (0x10000,))


def test_create_group_with_extensions_and_join() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g", extensions=[(APP_EXT, b"policy v1")])
    assert ga.epoch == 0 and ga.extensions == ((APP_EXT, b"policy v1"),)
    gb = join(ga, b)
    in_sync(ga, gb)
    assert gb.extensions == ((APP_EXT, b"policy v1"),)
    # Persisted groups keep them.
    assert Group.from_bytes(gb.to_bytes()).extensions == gb.extensions


def test_create_group_refuses_unsupported_or_misplaced_extensions() -> None:
    a = client(b"alice", ())
    with pytest.raises(ExtensionsError, match="extensions_supported"):
        a.create_group(b"g", extensions=[(APP_EXT, b"")])
    with pytest.raises(ExtensionsError, match="cannot be a group extension"):
        client(b"bob").create_group(b"g", extensions=[(2, b"")])
    with pytest.raises(ExtensionsError, match="twice"):
        client(b"bob").create_group(b"g", extensions=[(APP_EXT, b""), (APP_EXT, b"x")])
    rc = RequiredCapabilities(extension_types=(OTHER_EXT,)).to_bytes()
    with pytest.raises(ExtensionsError, match="lacks required extension"):
        client(b"bob").create_group(b"g", extensions=[(3, rc)])


def test_joiner_without_support_cannot_be_added() -> None:
    a = client(b"alice")
    ga = a.create_group(b"g", extensions=[(APP_EXT, b"v")])
    with pytest.raises(CommitError, match="group extension"):
        ga.add([client(b"bob", ()).key_package()])
    assert not ga.has_pending_commit


def test_gce_commit_changes_extensions_for_everyone() -> None:
    a, b, c = client(b"alice"), client(b"bob"), client(b"carol")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    gc = join(ga, c, gb)
    out = gb.commit(extensions=[(APP_EXT, b"v2")], authenticated_data=b"why: policy")
    commit = MLSMessage.from_bytes(out.commit).payload
    assert not isinstance(commit, PublicMessage)  # private handshakes by default
    for g in (ga, gc):
        ev = g.process(out.commit)
        assert isinstance(ev, CommitApplied) and ev.extensions_changed
        assert ev.committer == b"bob" and ev.authenticated_data == b"why: policy"
    own = gb.merge_pending_commit()
    assert own.extensions_changed and own.authenticated_data == b"why: policy"
    in_sync(ga, gb, gc)
    assert ga.extensions == ((APP_EXT, b"v2"),)
    # The same list again changes nothing; an empty list clears them.
    out = ga.update(extensions=[(APP_EXT, b"v2")])
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and not ev.extensions_changed
    gc.process(out.commit)
    ga.merge_pending_commit()
    out = ga.remove([b"carol"], extensions=[])
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.extensions_changed and ev.removed == (b"carol",)
    ga.merge_pending_commit()
    in_sync(ga, gb)
    assert ga.extensions == ()


def test_gce_always_carries_a_path() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    ga.handshake_format = WireFormat.PUBLIC_MESSAGE
    out = ga.commit(extensions=[(APP_EXT, b"x")])
    msg = MLSMessage.from_bytes(out.commit).payload
    assert isinstance(msg, PublicMessage)
    commit = msg.content.content
    assert isinstance(commit, Commit) and commit.path is not None
    kinds = [type(p.body) for p in commit.proposals if isinstance(p, Proposal)]
    assert kinds == [GroupContextExtensions]
    assert isinstance(gb.process(out.commit), CommitApplied)
    ga.merge_pending_commit()
    in_sync(ga, gb)


def test_gce_with_add_in_same_commit_checks_the_newcomer() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    # The new extensions apply to the Add in the same commit (RFC 9420 12.3).
    with pytest.raises(CommitError):
        ga.add([client(b"dave", ()).key_package()], extensions=[(APP_EXT, b"")])
    out = ga.add([client(b"carol").key_package()], extensions=[(APP_EXT, b"")])
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.added == (b"carol",) and ev.extensions_changed
    ga.merge_pending_commit()
    in_sync(ga, gb)


def test_gce_support_excludes_members_removed_in_the_same_commit() -> None:
    a, b, old = client(b"alice"), client(b"bob"), client(b"old", ())
    ga = a.create_group(b"g")
    gb = join(ga, b)
    gold = join(ga, old, gb)
    with pytest.raises(CommitError, match="group extension"):
        ga.commit(extensions=[(APP_EXT, b"")])
    out = ga.remove([b"old"], extensions=[(APP_EXT, b"")])
    assert isinstance(gb.process(out.commit), CommitApplied)
    ev = gold.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.removed_self
    ga.merge_pending_commit()
    in_sync(ga, gb)


def test_required_capabilities_bind_later_adds() -> None:
    a, b = client(b"alice", (APP_EXT, OTHER_EXT)), client(b"bob", (APP_EXT, OTHER_EXT))
    ga = a.create_group(b"g")
    gb = join(ga, b)
    rc = RequiredCapabilities(extension_types=(OTHER_EXT,)).to_bytes()
    out = ga.commit(extensions=[(3, rc)])
    gb.process(out.commit)
    ga.merge_pending_commit()
    with pytest.raises(CommitError, match="required extension"):
        ga.add([client(b"carol").key_package()])  # supports APP_EXT only
    out = ga.add([client(b"dave", (OTHER_EXT,)).key_package()])
    assert isinstance(gb.process(out.commit), CommitApplied)


def test_gce_proposal_by_reference() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    prop = gb.propose_group_context_extensions([(APP_EXT, b"from bob")])
    ev = ga.process(prop)
    assert isinstance(ev, ProposalMessage) and ev.sender == b"bob"
    out = ga.commit()  # the cached GCE forces a path
    applied = gb.process(out.commit)
    assert isinstance(applied, CommitApplied) and applied.extensions_changed
    ga.merge_pending_commit()
    in_sync(ga, gb)
    assert gb.extensions == ((APP_EXT, b"from bob"),)
    with pytest.raises(ProposalError):
        gb.propose_group_context_extensions([(4, b"")])


def test_own_gce_replaces_a_cached_one() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    ga.process(gb.propose_group_context_extensions([(APP_EXT, b"bob's")]))
    out = ga.commit(extensions=[(APP_EXT, b"alice's")])
    gb.process(out.commit)
    ga.merge_pending_commit()
    in_sync(ga, gb)
    assert ga.extensions == ((APP_EXT, b"alice's"),)


def test_unsupported_cached_gce_is_left_out_by_the_committer() -> None:
    a, b = client(b"alice", (APP_EXT, OTHER_EXT)), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    # Bob (who lacks OTHER_EXT) proposes it anyway; alice's commit leaves it out.
    msg = gb._propose(mls.group._gce_proposal([(OTHER_EXT, b"")], ProposalError))
    ga.process(msg)
    out = ga.commit()
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and not ev.extensions_changed
    ga.merge_pending_commit()
    in_sync(ga, gb)


def test_receiver_rejects_gce_a_member_does_not_support(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = client(b"alice", (APP_EXT, OTHER_EXT)), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    # A misbehaving committer skips the support check.
    monkeypatch.setattr(mls.commit, "check_tree_supports", lambda *a, **k: None)
    out = ga.commit(extensions=[(OTHER_EXT, b"")])
    monkeypatch.undo()
    before = gb.to_bytes()
    with pytest.raises(ProposalError, match="group extension"):
        gb.process(out.commit)
    assert gb.to_bytes() == before


def test_receiver_rejects_joiner_lacking_group_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g", extensions=[(APP_EXT, b"")])
    gb = join(ga, b)
    monkeypatch.setattr(mls.commit, "validate_proposal", lambda *a, **k: None)
    monkeypatch.setattr(mls.commit, "check_tree_supports", lambda *a, **k: None)
    out = ga.add([client(b"carol", ()).key_package()])
    monkeypatch.undo()
    before = gb.to_bytes()
    with pytest.raises(MlsError, match="group extension"):
        gb.process(out.commit)
    assert gb.to_bytes() == before


def test_authenticated_data_is_signed() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"g")
    gb = join(ga, b)
    ga.handshake_format = WireFormat.PUBLIC_MESSAGE
    out = ga.update(authenticated_data=b"signed metadata")
    pub = MLSMessage.from_bytes(out.commit).payload
    assert isinstance(pub, PublicMessage)
    assert pub.content.authenticated_data == b"signed metadata"
    # The membership tag and signature cover it: any change is rejected.
    raw = out.commit.replace(b"signed metadata", b"signed metadatA")
    before = gb.to_bytes()
    with pytest.raises(MlsError):
        gb.process(raw)
    assert gb.to_bytes() == before
    # Recomputing the membership tag (as any member could) is not enough: the signature
    # covers the data too.
    forged_content = replace(pub.content, authenticated_data=b"signed metadatA")
    ac = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, forged_content, pub.auth)
    s = gb.state
    tag = membership_tag(s.suite, s.secrets.membership_key, ac, s.context)
    forged = MLSMessage(PublicMessage(forged_content, pub.auth, tag)).to_bytes()
    with pytest.raises(CryptoError, match="signature"):
        gb.process(forged)
    assert gb.to_bytes() == before
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.authenticated_data == b"signed metadata"


def test_leaf_gains_new_extension_types_on_update() -> None:
    """A client restarted with more extension types advertises them from its next update,
    after which the group can adopt them."""
    a, b = client(b"alice"), client(b"bob", ())
    ga = a.create_group(b"g")
    gb = join(ga, b)
    with pytest.raises(CommitError):
        ga.commit(extensions=[(APP_EXT, b"")])
    b2 = client(b"bob", (APP_EXT,), signing_key=b._signing_key)
    gb = b2.group_from_bytes(gb.to_bytes())
    out = gb.update()
    ga.process(out.commit)
    gb.merge_pending_commit()
    out = ga.commit(extensions=[(APP_EXT, b"")])
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.extensions_changed
    ga.merge_pending_commit()
    in_sync(ga, gb)


def test_change_adds_removes_and_sets_extensions_in_one_commit() -> None:
    ext_type = 0xF5A0
    alice = Client(b"alice", extensions_supported=[ext_type], clock=lambda: 1_700_000_000)
    bob = Client(b"bob", extensions_supported=[ext_type], clock=lambda: 1_700_000_000)
    carol = Client(b"carol", extensions_supported=[ext_type], clock=lambda: 1_700_000_000)
    group = alice.create_group(b"g" * 32, extensions=[(ext_type, b"one")])
    out = group.add([bob.key_package()])
    group.merge_pending_commit()
    assert out.welcome is not None
    bob_group = bob.join(out.welcome)
    out = group.change(
        add=[carol.key_package()], remove=[b"bob"], extensions=[(ext_type, b"two")],
        authenticated_data=b"aad",
    )
    applied = bob_group.process(out.commit)
    assert applied.removed_self  # type: ignore[union-attr]
    merged = group.merge_pending_commit()
    assert merged.added == (b"carol",) and merged.removed == (b"bob",)
    assert merged.extensions_changed and merged.authenticated_data == b"aad"
    assert group.members == [b"alice", b"carol"] and group.extensions == ((ext_type, b"two"),)
    assert out.welcome is not None
    assert carol.join(out.welcome).extensions == ((ext_type, b"two"),)


def test_check_key_package_refuses_what_add_would_refuse() -> None:
    alice = Client(b"alice", clock=lambda: 1_700_000_000)
    bob = Client(b"bob", clock=lambda: 1_700_000_000)
    group = alice.create_group(b"g" * 32)
    good = bob.key_package()
    group.check_key_package(good)
    expired = Client(b"carol", clock=lambda: 1_000_000_000,
                     key_package_lifetime=3600).key_package()
    with pytest.raises(MlsError):
        group.check_key_package(expired)
    with pytest.raises(MlsError):
        group.check_key_package(b"\x00\x01garbage")
