"""ReInit (RFC 9420 11.2, 12.1.5): proposing and committing it, the closed old group, the
new group bound by a reinit resumption PSK (also across cipher suites), the joiners' checks;
and resumption PSK proposals (8.6) within a group."""

from __future__ import annotations

import random

import pytest

import mls.commit
from mls import (
    ApplicationMessage,
    Client,
    CommitApplied,
    CommitError,
    Group,
    GroupInactiveError,
    MlsError,
    ProposalError,
    ProposalMessage,
    PskError,
    ReInitError,
    ReInitPendingError,
    WelcomeError,
)
from mls.messages import (
    Add,
    KeyPackage,
    MLSMessage,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    Remove,
    ResumptionPSKUsage,
)
from mls.state import decode_state, encode_state

NOW = 1_700_000_000
EXT = 0xFF01


def client(name: bytes, suite: int = 1) -> Client:
    seed = int.from_bytes(name, "big") + 1000 * suite
    return Client(
        name,
        suite,
        rng=random.Random(seed).randbytes,
        clock=lambda: NOW,
        extensions_supported=[EXT],
    )


def trio(suite: int = 1) -> tuple[Group, Group, Group]:
    a, b, c = client(b"alice", suite), client(b"bob", suite), client(b"carol", suite)
    ga = a.create_group(b"old", extensions=[(EXT, b"v1")])
    out = ga.add([b.key_package(), c.key_package()])
    ga.merge_pending_commit()
    assert out.welcome is not None
    return ga, b.join(out.welcome), c.join(out.welcome)


def in_sync(*groups: Group) -> None:
    for g in groups[1:]:
        assert g.epoch == groups[0].epoch
        assert g.epoch_authenticator == groups[0].epoch_authenticator


def b2_kp(c: Client) -> KeyPackage:
    kp = MLSMessage.from_bytes(c.key_package()).payload
    assert isinstance(kp, KeyPackage)
    return kp


def reinit_all(ga: Group, gb: Group, gc: Group, **kw: object) -> ReInit:
    out = gb.reinit(**kw)  # type: ignore[arg-type]
    for g in (ga, gc):
        ev = g.process(out.commit)
        assert isinstance(ev, CommitApplied) and ev.reinit is not None
    own = gb.merge_pending_commit()
    assert own.reinit is not None and own.reinit == ga.reinit_pending == gc.reinit_pending
    in_sync(ga, gb, gc)
    return own.reinit


@pytest.mark.parametrize("new_suite", [1, 2, 7], ids=lambda s: f"to-suite{s}")
def test_reinit_to_a_new_group(new_suite: int) -> None:
    ga, gb, gc = trio()
    late = gc.encrypt(b"sent before the reinit")
    ri = reinit_all(ga, gb, gc, group_id=b"new", cipher_suite=new_suite, extensions=[(EXT, b"v2")])
    assert (ri.group_id, ri.cipher_suite) == (b"new", new_suite)
    # The old group is closed for sending and for handshakes; late messages still read.
    for send in (lambda: ga.encrypt(b"x"), ga.update, lambda: ga.propose_remove(b"bob")):
        with pytest.raises(ReInitPendingError):
            send()
    assert isinstance(ReInitPendingError("x"), GroupInactiveError)
    assert ga.process(late) == ApplicationMessage(b"carol", b"sent before the reinit", b"", 1)
    # Step 3: alice (a client of the new suite, same identity) makes the new group.
    a2, b2, c2 = (client(n, new_suite) for n in (b"alice", b"bob", b"carol"))
    made = a2.create_reinit_group(ga, [b2.key_package(), c2.key_package()])
    new_a = made.group
    assert made.welcome is not None
    new_b = b2.join_reinit(made.welcome, gb)
    new_c = c2.join_reinit(made.welcome, gc)
    in_sync(new_a, new_b, new_c)
    assert new_a.epoch == 1 and new_a.group_id == b"new" and new_b.cipher_suite == new_suite
    assert new_b.extensions == ((EXT, b"v2"),) and new_b.members == [b"alice", b"bob", b"carol"]
    assert new_b.process(new_a.encrypt(b"hello")) == ApplicationMessage(b"alice", b"hello", b"", 1)


def test_join_reinit_checks_the_welcome() -> None:
    ga, gb, gc = trio()
    reinit_all(ga, gb, gc, group_id=b"new")
    b2 = client(b"bob")
    # A Welcome to an unrelated group, without the reinit PSK.
    other = client(b"zed").create_group(b"new", extensions=[(EXT, b"v1")])
    out = other.add([b2.key_package()])
    assert out.welcome is not None
    with pytest.raises(WelcomeError, match="resumption PSK"):
        b2.join_reinit(out.welcome, gb)
    # A Welcome with the right reinit PSK from a group that does not match the ReInit
    # (another group id): made as create_reinit_group does, with the id changed.
    a2 = client(b"alice")
    wrong = a2.create_group(b"not-new", extensions=[(EXT, b"v1")])
    pid = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, b"old", ga.epoch, bytes(32))
    made = wrong._commit(
        [Proposal(Add(b2_kp(b2))), Proposal(PreSharedKey(pid))],
        cached_refs=(),
        resumption=ga.state.resumption_psk,
    )
    assert made.welcome is not None
    with pytest.raises(WelcomeError, match="does not match"):
        b2.join_reinit(made.welcome, gb)
    # Not-reinitialized groups have nothing to join.
    _, gb3, _ = trio()
    with pytest.raises(ReInitError):
        b2.join_reinit(made.welcome, gb3)
    # A plain join of a reinit Welcome fails: it needs the old group's PSK.
    with pytest.raises(PskError):
        b2.join(made.welcome)


def test_create_reinit_group_checks() -> None:
    ga, gb, gc = trio()
    with pytest.raises(ReInitError, match="no ReInit"):
        client(b"alice").create_reinit_group(ga, [])
    reinit_all(ga, gb, gc, cipher_suite=2)
    with pytest.raises(ReInitError, match="suite"):
        client(b"alice").create_reinit_group(ga, [])  # a suite-1 client
    with pytest.raises(ReInitError, match="not another member"):
        client(b"alice", 2).create_reinit_group(ga, [client(b"mallory", 2).key_package()])
    with pytest.raises(ReInitError, match="not a member"):
        client(b"dave", 2).create_reinit_group(ga, [])


def test_propose_reinit_and_commit_it_alone() -> None:
    ga, gb, gc = trio()
    prop = gc.propose_reinit(group_id=b"next")
    for g in (ga, gb):
        assert isinstance(g.process(prop), ProposalMessage)
    # An ordinary commit leaves the cached ReInit out (RFC 9420 12.2: prefer the others).
    out = ga.update()
    for g in (gb, gc):
        ev = g.process(out.commit)
        assert isinstance(ev, CommitApplied) and ev.reinit is None
    ga.merge_pending_commit()
    prop = gc.propose_reinit(group_id=b"next")
    ga.process(prop)
    gb.process(prop)
    out = ga.commit_reinit()
    for g in (gb, gc):
        ev = g.process(out.commit)
        assert isinstance(ev, CommitApplied) and ev.reinit is not None
    assert ga.merge_pending_commit().reinit is not None
    with pytest.raises(ReInitPendingError):
        gb.commit_reinit()


def test_reinit_validation() -> None:
    ga, gb, _ = trio()
    with pytest.raises(CommitError, match="suite 9"):
        ga.reinit(cipher_suite=9)
    with pytest.raises(ProposalError, match="suite 9"):
        ga.propose_reinit(cipher_suite=9)
    with pytest.raises(CommitError, match="cannot be a group extension"):
        ga.reinit(extensions=[(2, b"")])
    assert not ga.has_pending_commit
    with pytest.raises(CommitError, match="no ReInit"):
        gb.commit_reinit()


def test_receiver_rejects_reinit_with_other_proposals(monkeypatch: pytest.MonkeyPatch) -> None:
    ga, gb, _ = trio()
    body = ReInit(b"x", 1, 1, ())
    monkeypatch.setattr(mls.commit, "validate_proposal_list", lambda *a, **k: None)
    out = ga._commit([Proposal(body), Proposal(Remove(2))], cached_refs=())
    monkeypatch.undo()
    before = gb.to_bytes()
    with pytest.raises(ProposalError, match="alone"):
        gb.process(out.commit)
    assert gb.to_bytes() == before


def test_reinit_pending_survives_storage_and_version_1_states_still_load() -> None:
    ga, gb, gc = trio()
    ri = reinit_all(ga, gb, gc)
    restored = Group.from_bytes(gb.to_bytes())
    assert restored.reinit_pending == ri
    with pytest.raises(ReInitPendingError):
        restored.encrypt(b"x")
    # A state stored by the previous version (no ReInit field) still decodes.
    _, fresh, _ = trio()
    v2 = encode_state(fresh.state)
    assert v2[4:6] == b"\x00\x02" and v2[-1:] == b"\x00"
    v1 = v2[:4] + b"\x00\x01" + v2[6:-1]
    assert decode_state(v1).reinit is None
    assert encode_state(decode_state(v1)) == v2
    with pytest.raises(MlsError):
        decode_state(v2[:4] + b"\x00\x03" + v2[6:])


def test_reinit_commit_is_refused_in_a_closed_group() -> None:
    ga, gb, gc = trio()
    out = ga.update()  # prepared before the reinit
    ga.clear_pending_commit()
    reinit_all(ga, gb, gc)
    before = gc.to_bytes()
    with pytest.raises(MlsError):
        gc.process(out.commit)
    assert gc.to_bytes() == before


# -- resumption PSKs ---------------------------------------------------------------------


def test_resumption_psk_proposals() -> None:
    ga, gb, gc = trio()
    first_epoch = ga.epoch
    out = ga.update()
    gb.process(out.commit)
    gc.process(out.commit)
    ga.merge_pending_commit()
    for epoch in (None, first_epoch):  # the current epoch's, then a kept past one
        prop = gb.propose_resumption_psk(epoch)
        ga.process(prop)
        gc.process(prop)
        out = ga.commit()
        gb.process(out.commit)
        gc.process(out.commit)
        ga.merge_pending_commit()
        in_sync(ga, gb, gc)
    with pytest.raises(PskError, match="not kept"):
        gb.propose_resumption_psk(99)


def test_reinit_usage_psk_is_refused_inside_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    ga, gb, _ = trio()
    pid = PreSharedKeyID.resumption(ResumptionPSKUsage.REINIT, b"old", 1, bytes(32))
    with pytest.raises(CommitError, match="only application"):
        ga._commit([Proposal(PreSharedKey(pid))])
    monkeypatch.setattr(mls.commit, "validate_proposal", lambda *a, **k: None)
    out = ga._commit([Proposal(PreSharedKey(pid))], resumption=lambda g, e: b"k" * 32)
    monkeypatch.undo()
    before = gb.to_bytes()
    with pytest.raises(PskError, match="only application"):
        gb.process(out.commit)
    assert gb.to_bytes() == before
