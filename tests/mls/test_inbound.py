"""The policy hook of ``Group.process(message, check=...)``: what it is shown for each kind
of message, that it runs before anything is installed, and that a check that raises (or a
hostile message that never reaches it) leaves the group state byte for byte unchanged."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mls import (
    ApplicationMessage,
    Client,
    CommitApplied,
    ContentType,
    CryptoError,
    Group,
    InboundCheck,
    ProposalKind,
    ProposalMessage,
    SenderType,
    WireFormat,
    WrongEpochError,
)
from mls.messages import (
    AuthenticatedContent,
    Commit,
    FramedContentAuthData,
    MLSMessage,
    PublicMessage,
)
from mls.outbound import own_content
from mls.protection import protect_private, sign_content
from mls.protection.public import membership_tag
from tests.mls.test_group import rng_for

NOW = 1_700_000_000
EXT = 0xFF01


class Refused(Exception):
    pass


def client(name: bytes) -> Client:
    seed = int.from_bytes(name, "big")
    return Client(
        name, rng=random.Random(seed).randbytes, clock=lambda: NOW, extensions_supported=[EXT]
    )


def trio() -> tuple[Group, Group, Group]:
    a, b, c = client(b"alice"), client(b"bob"), client(b"carol")
    ga = a.create_group(b"g")
    out = ga.add([b.key_package(), c.key_package()])
    ga.merge_pending_commit()
    assert out.welcome is not None
    return ga, b.join(out.welcome), c.join(out.welcome)


class Recorder:
    def __init__(self, refuse: bool = False) -> None:
        self.seen: list[InboundCheck] = []
        self.refuse = refuse

    def __call__(self, info: InboundCheck) -> None:
        self.seen.append(info)
        if self.refuse:
            raise Refused("policy says no")


def forged_commit(g: Group, signature_priv: bytes) -> bytes:
    """A PrivateMessage commit from ``g``'s member that decrypts (it uses the generation
    ``g`` would use next) but is signed with ``signature_priv``."""
    state = g.state
    content = own_content(state, Commit(()))
    sig = sign_content(
        state.suite, WireFormat.PRIVATE_MESSAGE, content, signature_priv, state.context
    )
    auth = FramedContentAuthData(sig, bytes(state.suite.nh))
    ac = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, content, auth)
    msg = protect_private(
        state.suite,
        ac,
        secret_tree=state.secret_tree.copy(),
        sender_data_secret=state.secrets.sender_data_secret,
        rng=rng_for(7),
    )
    return MLSMessage(msg).to_bytes()


def refused_unchanged(g: Group, message: bytes) -> InboundCheck:
    before = g.to_bytes()
    rec = Recorder(refuse=True)
    with pytest.raises(Refused):
        g.process(message, check=rec)
    assert g.to_bytes() == before
    (info,) = rec.seen
    return info


def test_application_message() -> None:
    ga, gb, _ = trio()
    msg = ga.encrypt(b"hi", aad=b"meta")
    info = refused_unchanged(gb, msg)
    assert info == InboundCheck(
        ContentType.APPLICATION,
        1,
        b"alice",
        0,
        b"meta",
        (),
        SenderType.MEMBER,
        WireFormat.PRIVATE_MESSAGE,
    )
    # Refused means not consumed: the same message still reads afterwards.
    rec = Recorder()
    assert gb.process(msg, check=rec) == ApplicationMessage(b"alice", b"hi", b"meta", 1)
    assert rec.seen == [info]


def test_application_message_of_a_past_epoch() -> None:
    ga, gb, gc = trio()
    late = gc.encrypt(b"late")
    out = ga.update()
    gb.process(out.commit)
    ga.merge_pending_commit()
    info = refused_unchanged(gb, late)
    assert info.epoch == 1 and info.sender == b"carol" and info.sender_leaf == 2
    assert isinstance(gb.process(late), ApplicationMessage)


@pytest.mark.parametrize("fmt", [WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE])
def test_proposal(fmt: WireFormat) -> None:
    ga, gb, _ = trio()
    gb.handshake_format = fmt
    msg = gb.propose_remove(b"carol")
    info = refused_unchanged(ga, msg)
    assert info.content_type == ContentType.PROPOSAL and info.wire_format == fmt
    assert (info.sender, info.sender_leaf) == (b"bob", 1)
    (view,) = info.proposals
    assert view.kind == ProposalKind.REMOVE and view.identity == b"carol" and view.leaf == 2
    assert (view.proposer, view.proposer_leaf, view.by_reference) == (b"bob", 1, False)
    assert ga.pending_proposals == []
    assert isinstance(ga.process(msg, check=Recorder()), ProposalMessage)
    assert len(ga.pending_proposals) == 1


@pytest.mark.parametrize("fmt", [WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE])
def test_commit_views_and_rollback(fmt: WireFormat) -> None:
    ga, gb, _ = trio()
    ga.handshake_format = gb.handshake_format = fmt
    ga.process(gb.propose_update())
    dave = client(b"dave")
    out = ga.add([dave.key_package()], extensions=[(EXT, b"rules")], authenticated_data=b"ad")
    # bob's Update is committed by reference.
    info = refused_unchanged(gb, out.commit)
    assert info.content_type == ContentType.COMMIT and info.epoch == 1
    assert (info.sender, info.sender_leaf, info.authenticated_data) == (b"alice", 0, b"ad")
    kinds = [(v.kind, v.by_reference) for v in info.proposals]
    assert kinds == [
        (ProposalKind.UPDATE, True),
        (ProposalKind.ADD, False),
        (ProposalKind.GCE, False),
    ]
    upd, add, gce = info.proposals
    assert (upd.proposer, upd.identity, upd.leaf) == (b"bob", b"bob", 1)
    assert add.identity == b"dave" and add.signature_key == dave.signature_public_key
    assert add.proposer == b"alice"
    assert gce.extensions == ((EXT, b"rules"),)
    # The refused commit applies fine afterwards (nothing was consumed or installed).
    rec = Recorder()
    ev = gb.process(out.commit, check=rec)
    assert isinstance(ev, CommitApplied) and ev.added == (b"dave",) and ev.extensions_changed
    assert rec.seen == [info]
    ga.merge_pending_commit()
    assert ga.epoch_authenticator == gb.epoch_authenticator


def test_remove_view_names_the_removed_member() -> None:
    ga, gb, _ = trio()
    out = ga.remove([b"carol"])
    info = refused_unchanged(gb, out.commit)
    (view,) = info.proposals
    assert (view.kind, view.identity, view.leaf) == (ProposalKind.REMOVE, b"carol", 2)


def test_check_not_called_for_hostile_messages() -> None:
    """Forged and wrong-epoch commits fail before the check and change nothing."""
    ga, gb, gc = trio()
    rec = Recorder()
    # A commit signed with a key that is not alice's (it decrypts fine).
    forged = forged_commit(ga, bytes(range(32)))
    before = gb.to_bytes()
    with pytest.raises(CryptoError):
        gb.process(forged, check=rec)
    assert gb.to_bytes() == before
    # A commit for the epoch after ours.
    out = ga.update()
    gc.process(out.commit)
    ga.merge_pending_commit()
    nxt = ga.update()
    with pytest.raises(WrongEpochError):
        gb.process(nxt.commit, check=rec)
    assert gb.to_bytes() == before
    # A commit of an epoch already left (replay).
    gb.process(out.commit)
    before = gb.to_bytes()
    with pytest.raises(WrongEpochError):
        gb.process(out.commit, check=rec)
    assert gb.to_bytes() == before
    assert rec.seen == []


def test_own_echo_skips_the_check() -> None:
    ga, _gb, _ = trio()
    out = ga.update()
    assert isinstance(ga.process(out.commit, check=Recorder(refuse=True)), CommitApplied)
    prop = ga.propose_remove(b"bob")
    assert isinstance(ga.process(prop, check=Recorder(refuse=True)), ProposalMessage)


def test_bad_confirmation_tag_after_check_leaves_state_unchanged() -> None:
    """The signature verifies and the check passes, then the commit fails its confirmation
    tag: nothing changes either."""
    ga, gb, _ = trio()
    ga.handshake_format = WireFormat.PUBLIC_MESSAGE
    out = ga.update()
    pub = MLSMessage.from_bytes(out.commit).payload
    assert isinstance(pub, PublicMessage) and pub.auth.confirmation_tag is not None
    bad_tag = bytes(len(pub.auth.confirmation_tag))
    auth = replace(pub.auth, confirmation_tag=bad_tag)
    s = gb.state
    ac = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, pub.content, auth)
    tag = membership_tag(s.suite, s.secrets.membership_key, ac, s.context)
    forged = MLSMessage(PublicMessage(pub.content, auth, tag)).to_bytes()
    before = gb.to_bytes()
    rec = Recorder()
    with pytest.raises(CryptoError, match="confirmation"):
        gb.process(forged, check=rec)
    assert gb.to_bytes() == before
    assert len(rec.seen) == 1
    assert isinstance(gb.process(out.commit), CommitApplied)
