"""Proposal rules (RFC 9420 section 12): single-proposal and list validation, application
order, PSK resolution, and a receiver rejecting an invalid commit with its state unchanged."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

import mls.commit
import mls.proposals
from mls import (
    Client,
    CommitApplied,
    CommitError,
    DictPskStore,
    Group,
    ProposalError,
    PskError,
)
from mls.crypto import get_suite
from mls.key_packages import create_key_package
from mls.messages import (
    Add,
    Capabilities,
    Credential,
    Extension,
    GroupContextExtensions,
    KeyPackage,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalRef,
    Remove,
    ResumptionPSKUsage,
    Sender,
    Update,
)
from mls.proposals import (
    ResolvedProposal,
    StoredProposal,
    apply_proposals,
    check_tree_supports,
    path_required,
    resolve_proposals,
    resolve_psks,
    validate_proposal,
    validate_proposal_list,
)
from mls.tree.ratchet_tree import RatchetTree

NOW = 1_700_000_000


def mk(name: bytes, **kw: object) -> Client:
    seed = int.from_bytes(name, "big")
    return Client(name, rng=random.Random(seed).randbytes, clock=lambda: NOW, **kw)  # type: ignore[arg-type]


@pytest.fixture
def three() -> Iterator[tuple[Group, Group, Group]]:
    store = DictPskStore({b"ext": b"external secret"})
    a, b, c = (mk(n, psk_store=store) for n in (b"alice", b"bob", b"carol"))
    ga = a.create_group(b"p")
    out = ga.add([b.key_package(), c.key_package()])
    ga.merge_pending_commit()
    assert out.welcome is not None
    yield ga, b.join(out.welcome), c.join(out.welcome)


def rp(body: object, sender: int, ref: bytes | None = None) -> ResolvedProposal:
    return ResolvedProposal(Proposal(body), Sender.member(sender), ref)  # type: ignore[arg-type]


def kp_of(name: bytes) -> KeyPackage:
    kp = MLSMessage.from_bytes(mk(name).key_package()).payload
    assert isinstance(kp, KeyPackage)
    return kp


def test_list_rules(three: tuple[Group, Group, Group]) -> None:
    ga, _gb, _ = three
    tree = ga.state.tree
    leaf_b = tree.leaf(1)
    assert leaf_b is not None
    upd = Update(leaf_b)
    with pytest.raises(ProposalError):
        validate_proposal_list([rp(upd, 0)], 0, tree=tree)  # committer's own Update
    with pytest.raises(ProposalError):
        validate_proposal_list([rp(Remove(0), 1)], 0, tree=tree)  # removes the committer
    with pytest.raises(ProposalError):
        validate_proposal_list([rp(Remove(2), 1), rp(Remove(2), 0)], 0, tree=tree)
    with pytest.raises(ProposalError):
        validate_proposal_list([rp(upd, 1), rp(Remove(1), 0)], 0, tree=tree)
    pid = PreSharedKeyID.external(b"ext", bytes(32))
    with pytest.raises(ProposalError):
        validate_proposal_list([rp(PreSharedKey(pid), 0), rp(PreSharedKey(pid), 1)], 0, tree=tree)
    gce = GroupContextExtensions(())
    with pytest.raises(ProposalError):
        validate_proposal_list([rp(gce, 0), rp(gce, 1)], 0, tree=tree)
    validate_proposal_list([rp(upd, 1), rp(Remove(2), 0), rp(PreSharedKey(pid), 0)], 0, tree=tree)


def test_path_required() -> None:
    pid = PreSharedKeyID.external(b"x", bytes(32))
    assert path_required([])
    assert not path_required([rp(Add(kp_of(b"n")), 0), rp(PreSharedKey(pid), 0)])
    assert path_required([rp(Remove(1), 0)])
    assert path_required([rp(GroupContextExtensions(()), 0)])


def test_single_proposal_checks(three: tuple[Group, Group, Group]) -> None:
    ga, _, _ = three
    s = ga.state
    ctx, tree = s.context, s.tree
    with pytest.raises(ProposalError):
        validate_proposal(
            s.suite, Proposal(Remove(7)), Sender.member(0), context=ctx, tree=tree, now=NOW
        )
    bad_nonce = PreSharedKeyID.external(b"ext", b"short")
    with pytest.raises(ProposalError):
        validate_proposal(
            s.suite,
            Proposal(PreSharedKey(bad_nonce)),
            Sender.member(0),
            context=ctx,
            tree=tree,
            now=NOW,
        )
    branch = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"p", 0, bytes(32))
    with pytest.raises(ProposalError):
        validate_proposal(
            s.suite,
            Proposal(PreSharedKey(branch)),
            Sender.member(0),
            context=ctx,
            tree=tree,
            now=NOW,
        )
    leaf = tree.leaf(1)
    assert leaf is not None
    # An Update must carry source=update, a fresh key and a signature over this group/leaf.
    with pytest.raises(ProposalError):
        validate_proposal(
            s.suite, Proposal(Update(leaf)), Sender.member(1), context=ctx, tree=tree, now=NOW
        )
    # A group extension type no member supports: acceptable as a single proposal (12.1.7
    # counts the members of the tree the commit produces), refused on that tree.
    unsupported = GroupContextExtensions((Extension(0xFF00, b""),))
    validate_proposal(
        s.suite, Proposal(unsupported), Sender.member(0), context=ctx, tree=tree, now=NOW
    )
    with pytest.raises(ProposalError, match="group extension 65280"):
        check_tree_supports(tree, ((0xFF00, b""),))
    # Types RFC 9420 puts in leaves or GroupInfo never go into a GroupContext.
    for misplaced in (1, 2, 4):
        with pytest.raises(ProposalError, match="cannot be a group extension"):
            validate_proposal(
                s.suite,
                Proposal(GroupContextExtensions((Extension(misplaced, b""),))),
                Sender.member(0),
                context=ctx,
                tree=tree,
                now=NOW,
            )
    with pytest.raises(ProposalError, match="does not parse"):
        validate_proposal(
            s.suite,
            Proposal(GroupContextExtensions((Extension(3, b"\xff"),))),
            Sender.member(0),
            context=ctx,
            tree=tree,
            now=NOW,
        )


def test_apply_order_and_duplicate_add(three: tuple[Group, Group, Group]) -> None:
    ga, _, _ = three
    tree = ga.state.tree.copy()
    new = kp_of(b"newbie")
    applied = apply_proposals(tree, [rp(Add(new), 0), rp(Remove(1), 0)])
    # Removes run before Adds, so the newcomer takes the freed leaf 1.
    assert [i for i, _ in applied.added] == [1] and [i for i, _ in applied.removed] == [1]
    existing = ga.state.tree.leaf(2)
    assert existing is not None
    dup = KeyPackage(new.cipher_suite, new.init_key, existing, (), b"")
    with pytest.raises(ProposalError):
        apply_proposals(ga.state.tree.copy(), [rp(Add(dup), 0)])
    # Two Adds of the same client in one commit are refused too.
    with pytest.raises(ProposalError):
        apply_proposals(ga.state.tree.copy(), [rp(Add(new), 0), rp(Add(new), 0)])
    # A removed member's keys are free again: Removes apply first.
    applied = apply_proposals(ga.state.tree.copy(), [rp(Add(dup), 0), rp(Remove(2), 0)])
    assert [i for i, _ in applied.added] == [2]


def test_resolve_missing_reference() -> None:
    with pytest.raises(ProposalError):
        resolve_proposals([ProposalRef(b"\x01" * 32)], {}, Sender.member(0))
    sp = StoredProposal(b"r" * 32, Proposal(Remove(1)), Sender.member(2))
    (got,) = resolve_proposals([ProposalRef(b"r" * 32)], {sp.ref: sp}, Sender.member(0))
    assert got.sender == Sender.member(2) and got.ref == sp.ref


def test_psk_resolution(three: tuple[Group, Group, Group]) -> None:
    ga, _, _ = three
    s = ga.state
    store = DictPskStore({b"ext": b"v"})
    ext = PreSharedKeyID.external(b"ext", bytes(32))
    res = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, b"p", s.epoch, bytes(32))
    got = resolve_psks(s.suite, [ext, res], store, s.resumption_psk)
    assert got == [(ext, b"v"), (res, s.secrets.resumption_psk)]
    with pytest.raises(PskError):
        resolve_psks(s.suite, [PreSharedKeyID.external(b"nope", bytes(32))], store, None)
    old = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, b"p", 99, bytes(32))
    with pytest.raises(PskError):
        resolve_psks(s.suite, [old], store, s.resumption_psk)


def test_external_psk_proposal_end_to_end(three: tuple[Group, Group, Group]) -> None:
    ga, gb, gc = three
    p = gb.propose_external_psk(b"ext")
    ga.process(p)
    gc.process(p)
    out = ga.commit()
    assert isinstance(gb.process(out.commit), CommitApplied)
    gc.process(out.commit)
    ga.merge_pending_commit()
    assert ga.epoch_authenticator == gb.epoch_authenticator == gc.epoch_authenticator
    with pytest.raises(PskError):
        gb.propose_external_psk(b"missing")


def test_receiver_rejects_invalid_commit(
    three: tuple[Group, Group, Group], monkeypatch: pytest.MonkeyPatch
) -> None:
    ga, gb, _ = three
    # A misbehaving committer: skip the committer-side checks and remove leaf 2 twice.
    monkeypatch.setattr(mls.commit, "validate_proposal_list", lambda *a, **k: None)
    monkeypatch.setattr(mls.commit, "apply_proposals", _apply_ignoring_errors)
    out = ga._commit([Proposal(Remove(2)), Proposal(Remove(2))])
    monkeypatch.undo()
    state = gb.to_bytes()
    with pytest.raises(ProposalError, match="more than once"):
        gb.process(out.commit)
    assert gb.to_bytes() == state


def _apply_ignoring_errors(tree: object, resolved: list[ResolvedProposal]) -> object:
    seen: set[int] = set()
    kept = []
    for r in resolved:
        body = r.proposal.body
        if isinstance(body, Remove) and body.removed in seen:
            continue
        if isinstance(body, Remove):
            seen.add(body.removed)
        kept.append(r)
    return apply_proposals(tree, kept)  # type: ignore[arg-type]


def _kp_with(name: bytes, credential: Credential, credentials: tuple[int, ...]) -> KeyPackage:
    suite = get_suite(1)
    r = random.Random(name)
    priv, _ = suite.generate_signature_key_pair(r.randbytes)
    caps = Capabilities(cipher_suites=(1,), credentials=credentials)
    return create_key_package(
        suite, credential, priv, rng=r.randbytes, now=NOW, capabilities=caps
    ).key_package


def test_added_credential_types_are_supported_both_ways(three: tuple[Group, Group, Group]) -> None:
    """RFC 9420 7.3: an added leaf's credential type must be supported by every member, and
    it must support the types the members use."""
    ga, _, _ = three
    x509 = _kp_with(b"x509", Credential.x509((b"not checked here",)), (1, 2))
    with pytest.raises(CommitError, match="credential type of the added leaf"):
        ga.add([x509])
    assert not ga.has_pending_commit
    # A tree whose member uses x509: an Add that cannot read x509 is refused, one that can
    # is accepted.
    tree = RatchetTree(get_suite(1), [x509.leaf_node])
    basic_only = _kp_with(b"b1", Credential.basic(b"b1"), (1,))
    with pytest.raises(ProposalError, match="does not support the credential type of leaf 0"):
        apply_proposals(tree.copy(), [rp(Add(basic_only), 0)])
    both = _kp_with(b"b2", Credential.basic(b"b2"), (1, 2))
    applied = apply_proposals(tree.copy(), [rp(Add(both), 0)])
    assert [i for i, _ in applied.added] == [1]


def test_receiver_refuses_add_of_unsupported_credential(
    three: tuple[Group, Group, Group], monkeypatch: pytest.MonkeyPatch
) -> None:
    ga, gb, _ = three
    x509 = _kp_with(b"x509", Credential.x509((b"cert",)), (1, 2))
    monkeypatch.setattr(mls.commit, "apply_proposals", _apply_skipping_credentials)
    out = ga.add([x509])
    monkeypatch.undo()
    before = gb.to_bytes()
    with pytest.raises(ProposalError, match="credential type"):
        gb.process(out.commit)
    assert gb.to_bytes() == before


def _apply_skipping_credentials(tree: object, resolved: list[ResolvedProposal]) -> object:
    original = mls.proposals._check_credentials
    mls.proposals._check_credentials = lambda *a: None  # type: ignore[assignment]
    try:
        return apply_proposals(tree, resolved)  # type: ignore[arg-type]
    finally:
        mls.proposals._check_credentials = original
