"""The Group API end to end, in memory: create, add, join, encrypt, process, remove, update,
proposals, pending commits, persistence, and rejection of tampered, replayed, wrong-epoch and
wrong-group messages with the state left unchanged."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import (
    ApplicationMessage,
    Client,
    CommitApplied,
    CommitError,
    CryptoError,
    DecodeError,
    DuplicateProposalError,
    Group,
    GroupInactiveError,
    MlsError,
    PendingCommitError,
    ProposalMessage,
    UnexpectedMessageError,
    UnknownMemberError,
    WireFormat,
    WrongEpochError,
    WrongGroupError,
)
from mls.crypto import SUITES
from mls.messages import MLSMessage, PrivateMessage, Proposal, PublicMessage, Remove
from mls.outbound import own_content
from mls.protection import authenticate, protect_private

NOW = 1_700_000_000


def clock() -> float:
    return NOW


def rng_for(seed: int) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return r.randbytes


def client(name: bytes, suite: int = 1, **kw: object) -> Client:
    return Client(name, suite, rng=rng_for(int.from_bytes(name, "big") + suite), clock=clock, **kw)  # type: ignore[arg-type]


def assert_in_sync(*groups: Group) -> None:
    first = groups[0]
    for g in groups[1:]:
        assert g.epoch == first.epoch
        assert g.epoch_authenticator == first.epoch_authenticator
        assert g.export_secret(b"test", b"ctx", 32) == first.export_secret(b"test", b"ctx", 32)
        assert g.export_tree() == first.export_tree()
        assert g.members == first.members


def pair(suite: int = 1, **kw: object) -> tuple[Client, Group, Client, Group]:
    a, b = client(b"alice", suite, **kw), client(b"bob", suite, **kw)
    ga = a.create_group(b"group-1")
    out = ga.add([b.key_package()])
    assert out.welcome is not None
    ga.merge_pending_commit()
    gb = b.join(out.welcome)
    return a, ga, b, gb


def trio() -> tuple[Group, Group, Group]:
    _, ga, _, gb = pair()
    c = client(b"carol")
    out = ga.add([c.key_package()])
    assert isinstance(gb.process(out.commit), CommitApplied)
    ga.merge_pending_commit()
    assert out.welcome is not None
    gc = c.join(out.welcome)
    assert_in_sync(ga, gb, gc)
    return ga, gb, gc


@pytest.mark.parametrize("suite", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_create_add_join_encrypt_both_ways(suite: int) -> None:
    _, ga, _, gb = pair(suite)
    assert ga.epoch == gb.epoch == 1
    assert gb.members == [b"alice", b"bob"]
    assert gb.group_id == b"group-1"
    assert_in_sync(ga, gb)
    msg = ga.encrypt(b"hello", aad=b"meta")
    ev = gb.process(msg)
    assert ev == ApplicationMessage(b"alice", b"hello", b"meta", 1)
    ev = ga.process(gb.encrypt(b"back"))
    assert isinstance(ev, ApplicationMessage) and ev.sender == b"bob" and ev.data == b"back"


def test_new_group_is_epoch_zero() -> None:
    g = client(b"solo").create_group(b"g")
    assert g.epoch == 0 and g.members == [b"solo"]
    assert len(g.epoch_authenticator) == 32


def test_public_message_handshakes_are_accepted() -> None:
    _, ga, _, gb = pair()
    ga.handshake_format = WireFormat.PUBLIC_MESSAGE
    out = ga.update()
    assert isinstance(MLSMessage.from_bytes(out.commit).payload, PublicMessage)
    assert isinstance(gb.process(out.commit), CommitApplied)
    ga.merge_pending_commit()
    assert_in_sync(ga, gb)
    out = gb.update()
    assert isinstance(MLSMessage.from_bytes(out.commit).payload, PrivateMessage)
    ga.process(out.commit)
    gb.merge_pending_commit()
    assert_in_sync(ga, gb)


def test_update_changes_leaf_key_and_keeps_sync() -> None:
    ga, gb, gc = trio()
    before = ga.export_tree()
    old_auth = ga.epoch_authenticator
    out = gb.update()
    assert out.welcome is None
    ga.process(out.commit)
    gc.process(out.commit)
    gb.merge_pending_commit()
    assert ga.export_tree() != before and ga.epoch_authenticator != old_auth
    assert_in_sync(ga, gb, gc)


def test_remove_and_removed_member_cannot_read_next_epoch() -> None:
    ga, gb, gc = trio()
    bob_old = Group.from_bytes(gb.to_bytes())
    out = ga.remove([b"bob"])
    ev = gb.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.removed_self and ev.removed == (b"bob",)
    assert not gb.active
    ev = gc.process(out.commit)
    assert isinstance(ev, CommitApplied) and ev.removed == (b"bob",) and not ev.removed_self
    ga.merge_pending_commit()
    assert_in_sync(ga, gc)
    assert ga.members == [b"alice", b"carol"]
    secret = ga.encrypt(b"not for bob")
    with pytest.raises(GroupInactiveError):
        gb.process(secret)
    with pytest.raises(GroupInactiveError):
        gb.encrypt(b"x")
    # Bob's state from before the removal has no key for the new epoch either.
    with pytest.raises(WrongEpochError):
        bob_old.process(secret)
    ev = gc.process(secret)
    assert isinstance(ev, ApplicationMessage) and ev.data == b"not for bob"


def test_remove_unknown_identity_and_self() -> None:
    _, ga, _, _ = pair()
    with pytest.raises(UnknownMemberError):
        ga.remove([b"mallory"])
    with pytest.raises(CommitError):
        ga.remove([b"alice"])


def test_proposals_by_reference_committed_by_another_member() -> None:
    ga, gb, gc = trio()
    d = client(b"dave")
    p_add = gb.propose_add(d.key_package())
    p_upd = gc.propose_update()
    for g in (ga, gc):
        assert isinstance(g.process(p_add), ProposalMessage)
    for g in (ga, gb):
        ev = g.process(p_upd)
        assert isinstance(ev, ProposalMessage) and ev.sender == b"carol"
    assert len(ga.pending_proposals) == 2
    echoed = gb.process(p_add)  # our own proposal echoed back is recognised
    assert isinstance(echoed, ProposalMessage) and echoed.sender == b"bob"
    out = ga.commit()
    assert out.welcome is not None
    gb.process(out.commit)
    gc.process(out.commit)  # carol's own Update, committed by alice
    ga.merge_pending_commit()
    gd = d.join(out.welcome)
    assert_in_sync(ga, gb, gc, gd)
    assert gd.members == [b"alice", b"bob", b"carol", b"dave"]
    for g in (ga, gb, gd):
        assert g.process(gc.encrypt(b"after update")) == ApplicationMessage(
            b"carol", b"after update", b"", g.epoch
        )


def test_propose_remove_then_commit() -> None:
    ga, gb, gc = trio()
    p = gb.propose_remove(b"carol")
    ga.process(p)
    gc.process(p)
    out = ga.commit()
    gb.process(out.commit)
    assert gc.process(out.commit) == CommitApplied(
        gc.epoch, b"alice", (), (b"carol",), removed_self=True
    )
    ga.merge_pending_commit()
    assert_in_sync(ga, gb)
    assert ga.members == [b"alice", b"bob"]


def test_duplicate_proposal_rejected() -> None:
    ga, gb, _ = trio()
    ga.handshake_format = WireFormat.PUBLIC_MESSAGE
    gb.handshake_format = WireFormat.PUBLIC_MESSAGE
    p = gb.propose_update()
    ga.process(p)
    state = ga.to_bytes()
    with pytest.raises(DuplicateProposalError):
        ga.process(p)
    assert ga.to_bytes() == state


def test_own_commit_echo_and_pending_rules() -> None:
    ga, gb, _ = trio()
    out = ga.update()
    assert ga.has_pending_commit
    with pytest.raises(PendingCommitError):
        ga.add([client(b"x").key_package()])
    ev = ga.process(out.commit)  # the delivery service echoes our own commit
    assert isinstance(ev, CommitApplied) and ev.own and not ga.has_pending_commit
    gb.process(out.commit)
    assert_in_sync(ga, gb)
    with pytest.raises(PendingCommitError):
        ga.merge_pending_commit()


def test_clear_pending_commit_and_losing_a_race() -> None:
    ga, gb, gc = trio()
    epoch = ga.epoch
    ga.update()
    ga.clear_pending_commit()
    assert ga.epoch == epoch and not ga.has_pending_commit
    mine = ga.update()
    theirs = gb.update()
    ga.process(theirs.commit)  # another commit won the epoch: ours is dropped
    gc.process(theirs.commit)
    gb.merge_pending_commit()
    assert not ga.has_pending_commit
    assert_in_sync(ga, gb, gc)
    with pytest.raises(WrongEpochError):
        gb.process(mine.commit)


def test_tampered_application_message_leaves_state_unchanged() -> None:
    _, ga, _, gb = pair()
    msg = ga.encrypt(b"payload")
    raw = bytearray(msg)
    raw[-3] ^= 0x40
    state = gb.to_bytes()
    with pytest.raises(MlsError):
        gb.process(bytes(raw))
    assert gb.to_bytes() == state
    assert gb.process(msg) == ApplicationMessage(b"alice", b"payload", b"", 1)


def test_replayed_application_message_rejected() -> None:
    _, ga, _, gb = pair()
    msg = ga.encrypt(b"once")
    gb.process(msg)
    state = gb.to_bytes()
    with pytest.raises(CryptoError):
        gb.process(msg)
    assert gb.to_bytes() == state


def test_tampered_commit_leaves_state_unchanged() -> None:
    ga, gb, _ = trio()
    ga.handshake_format = WireFormat.PUBLIC_MESSAGE
    out = ga.update()
    raw = bytearray(out.commit)
    raw[-40] ^= 1  # inside the signature / membership tag
    state = gb.to_bytes()
    with pytest.raises(MlsError):
        gb.process(bytes(raw))
    assert gb.to_bytes() == state
    assert isinstance(gb.process(out.commit), CommitApplied)


def test_wrong_epoch_and_replayed_commit() -> None:
    ga, gb, gc = trio()
    out = ga.update()
    gb.process(out.commit)
    ga.merge_pending_commit()
    state = gb.to_bytes()
    with pytest.raises(WrongEpochError):
        gb.process(out.commit)  # replay of an applied commit
    assert gb.to_bytes() == state
    # gc is one epoch behind: a message of the new epoch is from its future.
    with pytest.raises(WrongEpochError):
        gc.process(ga.encrypt(b"future"))


def test_wrong_group_rejected() -> None:
    _, _ga, _, gb = pair()
    other = client(b"eve").create_group(b"group-2")
    state = gb.to_bytes()
    with pytest.raises(WrongGroupError):
        gb.process(other.encrypt(b"x"))
    assert gb.to_bytes() == state


def test_non_framed_messages_rejected() -> None:
    _, _, _, gb = pair()
    with pytest.raises(UnexpectedMessageError):
        gb.process(client(b"zed").key_package())
    with pytest.raises(DecodeError):
        gb.process(b"\x00\x01\x00")


def test_late_application_messages_within_bound() -> None:
    _, ga, _, gb = pair()
    late = [gb.encrypt(b"late %d" % i) for i in range(3)]
    for _ in range(2):
        out = ga.update()
        gb.process(out.commit)
        ga.merge_pending_commit()
    ev = ga.process(late[0])  # two epochs old: still kept (default bound 2)
    assert isinstance(ev, ApplicationMessage) and ev.epoch == ga.epoch - 2
    with pytest.raises(CryptoError):
        ga.process(late[0])
    out = ga.update()
    gb.process(out.commit)
    ga.merge_pending_commit()
    with pytest.raises(WrongEpochError):
        ga.process(late[1])


def test_join_with_tree_out_of_band() -> None:
    a, b = client(b"alice"), client(b"bob")
    ga = a.create_group(b"oob")
    ga.ratchet_tree_extension = False
    out = ga.add([b.key_package()])
    ga.merge_pending_commit()
    assert out.welcome is not None
    with pytest.raises(MlsError):
        b.join(out.welcome)
    gb = b.join(out.welcome, ratchet_tree=ga.export_tree())
    assert_in_sync(ga, gb)


def test_persistence_round_trip_with_pending_commit() -> None:
    ga, gb, gc = trio()
    ga.process(gb.encrypt(b"advance ratchets"))
    out = ga.update()
    blob = ga.to_bytes()
    restored = Group.from_bytes(blob)
    assert restored.to_bytes() == blob
    assert restored.has_pending_commit
    restored.merge_pending_commit()
    gb.process(out.commit)
    gc.process(out.commit)
    assert_in_sync(restored, gb, gc)
    ev = restored.process(gc.encrypt(b"hi"))
    assert isinstance(ev, ApplicationMessage) and ev.data == b"hi"


def test_many_epochs_random_operations() -> None:
    r = random.Random(7)
    founder = client(b"m0")
    groups = {b"m0": founder.create_group(b"random")}
    next_id = 1
    for _ in range(14):
        names = list(groups)
        committer = groups[r.choice(names)]
        op = r.choice(["add", "add", "remove", "update", "empty"])
        if op == "remove" and len(names) > 2:
            victim = r.choice([n for n in names if groups[n] is not committer])
            out = committer.remove([victim])
        elif op == "update":
            out = committer.update()
        elif op == "empty":
            out = committer.commit()
        else:
            newcomer = client(b"m%d" % next_id)
            next_id += 1
            out = committer.add([newcomer.key_package()])
        for name, g in list(groups.items()):
            if g is committer:
                continue
            ev = g.process(out.commit)
            assert isinstance(ev, CommitApplied)
            if ev.removed_self:
                del groups[name]
        committer.merge_pending_commit()
        if out.welcome is not None:
            groups[newcomer.identity] = newcomer.join(out.welcome)
        assert_in_sync(*groups.values())
        sender = groups[r.choice(list(groups))]
        msg = sender.encrypt(b"epoch %d" % sender.epoch)
        for g in groups.values():
            if g is not sender:
                ev2 = g.process(msg)
                assert isinstance(ev2, ApplicationMessage) and ev2.data == b"epoch %d" % g.epoch


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_from_bytes_on_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Group.from_bytes(data)


_FUZZ_GROUP: list[Group] = []


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200))
def test_process_garbage_only_raises_mls_error(data: bytes) -> None:
    if not _FUZZ_GROUP:
        _FUZZ_GROUP.append(pair()[3])
    g = _FUZZ_GROUP[0]
    state = g.to_bytes()
    with pytest.raises(MlsError):
        g.process(data)
    assert g.to_bytes() == state


def test_truncated_state_rejected() -> None:
    _, ga, _, _ = pair()
    blob = ga.to_bytes()
    for cut in (5, len(blob) // 2, len(blob) - 1):
        with pytest.raises(DecodeError):
            Group.from_bytes(blob[:cut])
    with pytest.raises(DecodeError):
        Group.from_bytes(blob + b"\x00")


@pytest.mark.parametrize("fmt", [WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE])
def test_bit_flips_in_commit_only_raise_mls_error(fmt: WireFormat) -> None:
    ga, gb, _ = trio()
    ga.handshake_format = fmt
    out = ga.add([client(b"dave").key_package()])
    state = gb.to_bytes()
    r = random.Random(5)
    positions = sorted(r.sample(range(len(out.commit)), min(60, len(out.commit))))
    for pos in positions:
        raw = bytearray(out.commit)
        raw[pos] ^= 1 << r.randrange(8)
        with pytest.raises(MlsError):
            gb.process(bytes(raw))
        assert gb.to_bytes() == state
    assert isinstance(gb.process(out.commit), CommitApplied)


def test_bit_flips_in_welcome_only_raise_mls_error() -> None:
    a = client(b"alice")
    ga = a.create_group(b"w")
    r = random.Random(9)
    for i in range(25):
        joiner = client(b"j%d" % i)
        out = ga.add([joiner.key_package()])
        ga.clear_pending_commit()
        assert out.welcome is not None
        raw = bytearray(out.welcome)
        raw[r.randrange(len(raw))] ^= 1 << r.randrange(8)
        with pytest.raises(MlsError):
            joiner.join(bytes(raw))


def _forged(g: Group, content: bytes | Proposal, signature_priv: bytes) -> bytes:
    """A PrivateMessage from ``g``'s member that decrypts fine (it uses the generation ``g``
    would use next) but is signed with ``signature_priv``."""
    state = g.state
    framed = own_content(state, content)
    ac = authenticate(
        state.suite, WireFormat.PRIVATE_MESSAGE, framed, signature_priv, state.context_bytes
    )
    msg = protect_private(
        state.suite,
        ac,
        secret_tree=state.secret_tree.copy(),
        sender_data_secret=state.secrets.sender_data_secret,
        rng=rng_for(99),
    )
    return MLSMessage(msg).to_bytes()


def test_bad_signature_after_decryption_leaves_state_unchanged() -> None:
    # The AEAD opens, so the secret-tree key is consumed before the signature fails: the
    # transaction must put the ratchet (and, for a first message, the tree nodes) back.
    _, ga, _, gb = pair()
    wrong = bytes(range(32))
    for round_ in range(3):  # first message of the epoch from alice, then existing ratchet
        forged = _forged(ga, b"forged", wrong)
        state = gb.to_bytes()
        with pytest.raises(CryptoError):
            gb.process(forged)
        assert gb.to_bytes() == state
        data = b"genuine %d" % round_
        assert gb.process(ga.encrypt(data)) == ApplicationMessage(b"alice", data, b"", 1)


def test_rejected_private_proposal_leaves_state_unchanged() -> None:
    _, ga, _, gb = pair()
    proposal = Proposal(Remove(5))  # a blank leaf: fails validation after decryption
    forged = _forged(ga, proposal, ga.state.signature_priv)
    state = gb.to_bytes()
    with pytest.raises(MlsError):
        gb.process(forged)
    assert gb.to_bytes() == state


def test_bad_signature_in_past_epoch_leaves_state_unchanged() -> None:
    _, ga, _, gb = pair()
    late = ga.encrypt(b"late")
    forged_late = _forged(ga, b"x", bytes(range(32)))  # same generation as the next one
    out = ga.update()
    gb.process(out.commit)
    ga.merge_pending_commit()
    state = gb.to_bytes()
    with pytest.raises(CryptoError):
        gb.process(forged_late)
    assert gb.to_bytes() == state
    assert gb.process(late) == ApplicationMessage(b"alice", b"late", b"", 1)
