"""Interop with AWS mls-rs (PyPI ``agentvault-mls-rs-uniffi``), suite 1, basic credentials.

Both directions of join (ratchet tree in the Welcome extension and out of band), external
commits of ours accepted by mls-rs, group-context extensions (at creation and by
GroupContextExtensions commits), both handshake wire formats, and a mixed group of our
members and mls-rs members running many epochs of adds, removes, updates, empty commits and
proposals by reference from both sides, with exporter secrets compared and application
messages read both ways after every epoch.

What the bindings allow, found by driving them: mls-rs sends handshake messages as
PublicMessage (the bindings expose no option to encrypt them) and reads both PublicMessage and
PrivateMessage; application messages are PrivateMessage both ways. An mls-rs commit is applied
on the committer by processing its own commit message. mls-rs names members by opaque
``SigningIdentity`` handles, which it hands out as message senders.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from mls import (
    ApplicationMessage,
    Client,
    CommitApplied,
    CommitError,
    GroupInactiveError,
    MlsError,
    ProposalMessage,
    WireFormat,
)
from mls.group import Group
from mls.messages import (
    Commit,
    Credential,
    ExtensionType,
    ExternalSender,
    ExternalSenders,
    KeyPackage,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    RequiredCapabilities,
)

R: Any = pytest.importorskip(
    "mls_rs_uniffi", reason="agentvault-mls-rs-uniffi (mls-rs bindings) is not installed"
)

SUITE = 1
LABEL, CONTEXT = b"interop", b"spacepanda"


def rs_client(name: bytes, *, tree_in_welcome: bool = True) -> Any:
    config = R.client_config_default()
    config.use_ratchet_tree_extension = tree_in_welcome
    keys = R.generate_signature_keypair(R.CipherSuite.CURVE25519_AES128)
    return R.Client(name, keys, config)


def our_client(name: bytes, seed: int, fmt: WireFormat = WireFormat.PRIVATE_MESSAGE) -> Client:
    # mls-rs checks KeyPackage lifetimes against its own wall clock, so ours must be real time.
    return Client(
        name, SUITE, rng=random.Random(seed).randbytes, clock=time.time, handshake_format=fmt
    )


def rs_msg(data: bytes) -> Any:
    return R.Message.from_bytes(data)


def wire_format(data: bytes) -> WireFormat:
    return MLSMessage.from_bytes(data).wire_format


def secret_ours(g: Group) -> bytes:
    return g.export_secret(LABEL, CONTEXT, 32)


def secret_rs(g: Any) -> bytes:
    return bytes(g.export_secret(LABEL, CONTEXT, 32))


# -- two-party checks ------------------------------------------------------------------------


@pytest.mark.parametrize("tree_in_welcome", [True, False], ids=["tree-in-welcome", "tree-oob"])
def test_mlsrs_creates_we_join(tree_in_welcome: bool) -> None:
    rs = rs_client(b"rs-alice", tree_in_welcome=tree_in_welcome)
    rs_group = rs.create_group(b"rs-made-group")
    bob = our_client(b"py-bob", 1)
    out = rs_group.add_members([rs_msg(bob.key_package())])
    assert wire_format(out.commit_message.to_bytes()) == WireFormat.PUBLIC_MESSAGE
    assert rs_group.process_incoming_message(out.commit_message).is_commit()
    welcome = bytes(out.welcome_message.to_bytes())
    if tree_in_welcome:
        assert out.ratchet_tree is None
        gb = bob.join(welcome)
    else:
        with pytest.raises(MlsError, match="no ratchet tree"):
            bob.join(welcome)
        tree = bytes(rs_group.export_tree().bytes)
        assert tree == bytes(out.ratchet_tree.bytes)
        gb = bob.join(welcome, ratchet_tree=tree)
        assert gb.export_tree() == tree
    assert gb.epoch == 1
    assert gb.group_id == b"rs-made-group"
    assert gb.members == [b"rs-alice", b"py-bob"]
    assert secret_ours(gb) == secret_rs(rs_group)

    got = rs_group.process_incoming_message(rs_msg(gb.encrypt(b"hello from python")))
    assert got.is_application_message() and bytes(got.data) == b"hello from python"
    back = gb.process(rs_group.encrypt_application_message(b"hello from rust").to_bytes())
    assert back == ApplicationMessage(b"rs-alice", b"hello from rust", b"", 1)

    # An UpdatePath from each side moves both to the next epochs in step.
    upd = gb.update()
    assert rs_group.process_incoming_message(rs_msg(upd.commit)).is_commit()
    gb.merge_pending_commit()
    assert secret_ours(gb) == secret_rs(rs_group)
    rs_out = rs_group.commit()
    rs_group.process_incoming_message(rs_out.commit_message)
    assert isinstance(gb.process(rs_out.commit_message.to_bytes()), CommitApplied)
    assert gb.epoch == 3 and secret_ours(gb) == secret_rs(rs_group)


@pytest.mark.parametrize("tree_in_welcome", [True, False], ids=["tree-in-welcome", "tree-oob"])
@pytest.mark.parametrize(
    "fmt", [WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE], ids=["private", "public"]
)
def test_we_create_mlsrs_joins(tree_in_welcome: bool, fmt: WireFormat) -> None:
    alice = our_client(b"py-alice", 2, fmt)
    ga = alice.create_group(b"py-made-group")
    ga.ratchet_tree_extension = tree_in_welcome
    rs = rs_client(b"rs-bob")
    out = ga.add([bytes(rs.generate_key_package_message().to_bytes())])
    assert wire_format(out.commit) == fmt
    ga.merge_pending_commit()
    assert out.welcome is not None
    if tree_in_welcome:
        rs_group = rs.join_group(None, rs_msg(out.welcome)).group
    else:
        with pytest.raises(R.Error):
            rs.join_group(None, rs_msg(out.welcome))
        tree = R.RatchetTree(bytes=ga.export_tree())
        rs_group = rs.join_group(tree, rs_msg(out.welcome)).group
    assert bytes(rs_group.export_tree().bytes) == ga.export_tree()
    assert secret_ours(ga) == secret_rs(rs_group)

    got = rs_group.process_incoming_message(rs_msg(ga.encrypt(b"ping", aad=b"meta")))
    assert got.is_application_message() and bytes(got.data) == b"ping"
    back = ga.process(rs_group.encrypt_application_message(b"pong").to_bytes())
    assert isinstance(back, ApplicationMessage) and back.data == b"pong"
    assert back.sender == b"rs-bob"

    # Our commit in the chosen handshake format is accepted by mls-rs.
    upd = ga.update()
    assert wire_format(upd.commit) == fmt
    assert rs_group.process_incoming_message(rs_msg(upd.commit)).is_commit()
    ga.merge_pending_commit()
    assert secret_ours(ga) == secret_rs(rs_group)


def test_tampered_messages_rejected_both_ways() -> None:
    alice = our_client(b"py-alice", 3)
    ga = alice.create_group(b"tamper")
    rs = rs_client(b"rs-bob")
    out = ga.add([bytes(rs.generate_key_package_message().to_bytes())])
    ga.merge_pending_commit()
    assert out.welcome is not None
    rs_group = rs.join_group(None, rs_msg(out.welcome)).group

    from_rs = bytearray(rs_group.encrypt_application_message(b"x" * 64).to_bytes())
    from_rs[-5] ^= 0x01
    before = ga.to_bytes()
    with pytest.raises(MlsError):
        ga.process(bytes(from_rs))
    assert ga.to_bytes() == before

    from_us = bytearray(ga.encrypt(b"y" * 64))
    from_us[-5] ^= 0x01
    with pytest.raises(R.Error):
        rs_group.process_incoming_message(rs_msg(bytes(from_us)))
    # Neither side is disturbed: the next genuine messages read fine.
    assert rs_group.process_incoming_message(rs_msg(ga.encrypt(b"ok"))).is_application_message()
    msg = rs_group.encrypt_application_message(b"ok").to_bytes()
    assert isinstance(ga.process(msg), ApplicationMessage)


def test_larger_tree_with_blanks_and_truncation() -> None:
    """Many leaves added at once (blank parents), then removals that blank leaves and shrink
    the tree; UpdatePaths from both sides must encrypt to the same resolutions."""
    alice = our_client(b"py-alice", 4)
    ga = alice.create_group(b"big")
    rs = rs_client(b"rs-bob")
    others = [our_client(b"py-%d" % i, 100 + i) for i in range(30)]
    out = ga.add(
        [bytes(rs.generate_key_package_message().to_bytes())] + [c.key_package() for c in others]
    )
    ga.merge_pending_commit()
    assert out.welcome is not None
    rs_group = rs.join_group(None, rs_msg(out.welcome)).group
    far = others[3].join(out.welcome)  # leaf 5: a member other than the two committers

    def sync(commit: bytes, committer: Group | None) -> None:
        if committer is None:
            rs_group.process_incoming_message(rs_msg(commit))
        else:
            assert rs_group.process_incoming_message(rs_msg(commit)).is_commit()
        for g in (ga, far):
            if g is committer:
                g.merge_pending_commit()
            else:
                assert isinstance(g.process(commit), CommitApplied)
        tree = bytes(rs_group.export_tree().bytes)
        assert ga.export_tree() == tree == far.export_tree()
        assert secret_ours(ga) == secret_rs(rs_group) == secret_ours(far)

    sync(bytes(rs_group.commit().commit_message.to_bytes()), None)
    sync(far.update().commit, far)
    # Blank a run of leaves in the middle, then the right edge, so the tree truncates.
    sync(ga.remove([b"py-%d" % i for i in range(5, 13)]).commit, ga)
    sync(bytes(rs_group.commit().commit_message.to_bytes()), None)
    assert ga.state.tree.n_leaves == 32
    sync(far.remove([b"py-%d" % i for i in range(14, 30)]).commit, far)
    assert ga.state.tree.n_leaves == 16  # leaves 16..31 blank: the tree was truncated
    sync(ga.update().commit, ga)
    sync(bytes(rs_group.commit().commit_message.to_bytes()), None)


# -- external commits and group-context extensions -------------------------------------------


def test_mlsrs_accepts_our_external_commit() -> None:
    """A client of ours joins by external commit a group in which mls-rs is a member; the
    bindings cannot make a GroupInfo (``CommitOutput.group_info`` is always None and there is
    no call to export one), so the other direction cannot be driven from Python."""
    alice = our_client(b"py-alice", 11)
    ga = alice.create_group(b"ext-join")
    rs = rs_client(b"rs-bob")
    out = ga.add([bytes(rs.generate_key_package_message().to_bytes())])
    ga.merge_pending_commit()
    assert out.welcome is not None
    rs_group = rs.join_group(None, rs_msg(out.welcome)).group

    dave = our_client(b"py-dave", 12)
    joined = dave.join_external(ga.group_info(), authenticated_data=b"via external commit")
    assert wire_format(joined.commit) == WireFormat.PUBLIC_MESSAGE
    assert rs_group.process_incoming_message(rs_msg(joined.commit)).is_commit()
    applied = ga.process(joined.commit)
    assert (
        isinstance(applied, CommitApplied) and applied.external and applied.added == (b"py-dave",)
    )
    gd = joined.group
    assert secret_ours(gd) == secret_rs(rs_group) == secret_ours(ga)
    assert bytes(rs_group.export_tree().bytes) == gd.export_tree()
    got = rs_group.process_incoming_message(rs_msg(gd.encrypt(b"hi from the joiner")))
    assert got.is_application_message() and bytes(got.data) == b"hi from the joiner"
    back = gd.process(rs_group.encrypt_application_message(b"welcome").to_bytes())
    assert back == ApplicationMessage(b"rs-bob", b"welcome", b"", 2)
    # mls-rs commits next; the joiner and alice follow.
    rs_out = rs_group.commit()
    assert rs_out.group_info is None  # see the docstring
    rs_group.process_incoming_message(rs_out.commit_message)
    for g in (ga, gd):
        assert isinstance(g.process(bytes(rs_out.commit_message.to_bytes())), CommitApplied)
    assert secret_ours(gd) == secret_rs(rs_group) == secret_ours(ga)
    # A tampered external commit is refused by both implementations.
    forged = bytearray(our_client(b"py-erin", 14).join_external(ga.group_info()).commit)
    forged[-10] ^= 1
    with pytest.raises(R.Error):
        rs_group.process_incoming_message(rs_msg(bytes(forged)))
    before = ga.to_bytes()
    with pytest.raises(MlsError):
        ga.process(bytes(forged))
    assert ga.to_bytes() == before


def test_group_context_extensions_with_mlsrs() -> None:
    """Suite 1 group with group-context extensions from creation, then GroupContextExtensions
    commits; mls-rs joins, follows and commits on top. mls-rs leaves advertise no
    non-default extension types (the bindings expose no capability setting), so only the
    RFC's default types can be used with them: required_capabilities and external_senders."""
    rc = RequiredCapabilities(credential_types=(1,)).to_bytes()
    alice = our_client(b"py-alice", 13)
    ga = alice.create_group(b"gce", extensions=[(ExtensionType.REQUIRED_CAPABILITIES, rc)])
    rs = rs_client(b"rs-bob")
    rs_kp = bytes(rs.generate_key_package_message().to_bytes())
    kp = MLSMessage.from_bytes(rs_kp).payload
    assert isinstance(kp, KeyPackage) and kp.leaf_node.capabilities.extensions == ()
    out = ga.add([rs_kp])
    ga.merge_pending_commit()
    assert out.welcome is not None
    rs_group = rs.join_group(None, rs_msg(out.welcome)).group
    assert secret_ours(ga) == secret_rs(rs_group)

    senders = ExternalSenders(
        (ExternalSender(alice.signature_public_key, Credential.basic(b"ds")),)
    )
    for fmt in (WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE):
        ga.handshake_format = fmt
        new = [(ExtensionType.EXTERNAL_SENDERS, senders.to_bytes())]
        if fmt == WireFormat.PUBLIC_MESSAGE:
            new.append((ExtensionType.REQUIRED_CAPABILITIES, rc))
        upd = ga.commit(extensions=new, authenticated_data=b"policy")
        assert rs_group.process_incoming_message(rs_msg(upd.commit)).is_commit()
        applied = ga.merge_pending_commit()
        assert applied.extensions_changed and ga.extensions == tuple(new)
        assert secret_ours(ga) == secret_rs(rs_group)
    # mls-rs commits in the new context (its key schedule binds the same extensions).
    rs_out = rs_group.commit()
    rs_group.process_incoming_message(rs_out.commit_message)
    applied = ga.process(bytes(rs_out.commit_message.to_bytes()))
    assert isinstance(applied, CommitApplied) and not applied.extensions_changed
    assert secret_ours(ga) == secret_rs(rs_group)
    # A type mls-rs does not support is refused before anything is sent.
    with pytest.raises(CommitError, match="group extension"):
        ga.commit(extensions=[(0xFF01, b"")])
    upd = ga.commit(extensions=[])
    assert rs_group.process_incoming_message(rs_msg(upd.commit)).is_commit()
    ga.merge_pending_commit()
    assert ga.extensions == () and secret_ours(ga) == secret_rs(rs_group)


# -- the mixed group -------------------------------------------------------------------------


@dataclass
class Ours:
    name: bytes
    client: Client
    group: Group

    @property
    def side(self) -> str:
        return "ours"

    def commit_add(self, key_packages: list[bytes]) -> tuple[bytes, bytes | None, bytes | None]:
        self._toggle_tree_extension()
        out = self.group.add(key_packages)
        return out.commit, out.welcome, None  # an out-of-band tree is read after the merge

    def _toggle_tree_extension(self) -> None:
        # Every other Welcome of ours leaves the tree out, for the joiner to get it aside.
        self.group.ratchet_tree_extension = not self.group.ratchet_tree_extension

    def commit_remove(self, names: list[bytes]) -> bytes:
        return self.group.remove(names).commit

    def commit_empty(self) -> bytes:
        return self.group.commit().commit

    def commit_update(self) -> bytes:
        return self.group.update().commit

    def commit_proposals(self) -> tuple[bytes, bytes | None, bytes | None]:
        self._toggle_tree_extension()
        out = self.group.commit()
        return out.commit, out.welcome, None

    def merge_own(self, commit: bytes) -> None:
        applied = self.group.process(commit)  # an echo of our own commit merges it
        assert isinstance(applied, CommitApplied) and applied.own

    def propose_add(self, key_package: bytes) -> bytes:
        return self.group.propose_add(key_package)

    def propose_remove(self, name: bytes) -> bytes:
        return self.group.propose_remove(name)

    def process_proposal(self, msg: bytes, sender: bytes) -> None:
        got = self.group.process(msg)
        assert isinstance(got, ProposalMessage) and got.sender == sender

    def process_commit(self, msg: bytes, committer: bytes) -> bool:
        got = self.group.process(msg)
        assert isinstance(got, CommitApplied) and got.committer == committer
        return got.removed_self

    def send(self, data: bytes) -> bytes:
        return self.group.encrypt(data)

    def receive(self, msg: bytes, sender: Member) -> bytes:
        got = self.group.process(msg)
        assert isinstance(got, ApplicationMessage) and got.sender == sender.name
        return got.data

    def secret(self) -> bytes:
        return secret_ours(self.group)

    def tree(self) -> bytes:
        return self.group.export_tree()


@dataclass
class Theirs:
    name: bytes
    client: Any
    group: Any
    # mls-rs names members by SigningIdentity handles; it hands them out as message senders.
    identities: dict[bytes, Any] = field(default_factory=dict)

    @property
    def side(self) -> str:
        return "theirs"

    def _out(self, out: Any) -> tuple[bytes, bytes | None, bytes | None]:
        welcome = out.welcome_message
        tree = out.ratchet_tree
        return (
            bytes(out.commit_message.to_bytes()),
            None if welcome is None else bytes(welcome.to_bytes()),
            None if tree is None else bytes(tree.bytes),
        )

    def commit_add(self, key_packages: list[bytes]) -> tuple[bytes, bytes | None, bytes | None]:
        return self._out(self.group.add_members([rs_msg(kp) for kp in key_packages]))

    def commit_remove(self, names: list[bytes]) -> bytes:
        who = [self.identities[n] for n in names]
        return bytes(self.group.remove_members(who).commit_message.to_bytes())

    def commit_empty(self) -> bytes:
        return bytes(self.group.commit().commit_message.to_bytes())

    commit_update = commit_empty  # mls-rs's empty commit carries an UpdatePath

    def commit_proposals(self) -> tuple[bytes, bytes | None, bytes | None]:
        return self._out(self.group.commit())

    def merge_own(self, commit: bytes) -> None:
        assert self.group.process_incoming_message(rs_msg(commit)).is_commit()

    def propose_add(self, key_package: bytes) -> bytes:
        (msg,) = self.group.propose_add_members([rs_msg(key_package)])
        return bytes(msg.to_bytes())

    def propose_remove(self, name: bytes) -> bytes:
        (msg,) = self.group.propose_remove_members([self.identities[name]])
        return bytes(msg.to_bytes())

    def process_proposal(self, msg: bytes, sender: bytes) -> None:
        got = self.group.process_incoming_message(rs_msg(msg))
        assert got.is_received_proposal()

    def process_commit(self, msg: bytes, committer: bytes) -> bool:
        got = self.group.process_incoming_message(rs_msg(msg))
        assert got.is_commit()
        return bool(got.effect.is_removed())

    def send(self, data: bytes) -> bytes:
        return bytes(self.group.encrypt_application_message(data).to_bytes())

    def receive(self, msg: bytes, sender: Member) -> bytes:
        got = self.group.process_incoming_message(rs_msg(msg))
        assert got.is_application_message()
        if isinstance(sender, Theirs):
            assert got.sender == sender.client.signing_identity()
        known = self.identities.setdefault(sender.name, got.sender)
        assert known == got.sender
        return bytes(got.data)

    def secret(self) -> bytes:
        return secret_rs(self.group)

    def tree(self) -> bytes:
        return bytes(self.group.export_tree().bytes)


Member = Ours | Theirs


@dataclass
class Mixed:
    """Drives a group whose members are ours and mls-rs's, one epoch at a time."""

    rng: random.Random
    members: dict[bytes, Member] = field(default_factory=dict)
    epoch: int = 0
    serial: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def candidate(self, side: str) -> tuple[bytes, Client | Any, bytes]:
        """A new would-be member: name, client, KeyPackage bytes."""
        self.serial += 1
        if side == "ours":
            fmt = (WireFormat.PRIVATE_MESSAGE, WireFormat.PUBLIC_MESSAGE)[self.serial % 2]
            name = b"py-%d" % self.serial
            ours = our_client(name, 1000 + self.serial, fmt)
            return name, ours, ours.key_package()
        name = b"rs-%d" % self.serial
        theirs = rs_client(name, tree_in_welcome=self.serial % 2 == 0)
        return name, theirs, bytes(theirs.generate_key_package_message().to_bytes())

    def join(self, name: bytes, client: Client | Any, welcome: bytes, tree: bytes | None) -> Member:
        if isinstance(client, Client):
            return Ours(name, client, client.join(welcome, ratchet_tree=tree))
        rs_tree = None if tree is None else R.RatchetTree(bytes=tree)
        return Theirs(name, client, client.join_group(rs_tree, rs_msg(welcome)).group)

    def apply(
        self,
        committer: Member,
        commit: bytes,
        joiners: tuple[tuple[bytes, Client | Any], ...] = (),
        welcome: bytes | None = None,
        tree: bytes | None = None,
        removed: tuple[bytes, ...] = (),
    ) -> list[Member]:
        """Deliver a commit to every member, then welcome the joiners; returns who left."""
        expected_fmt = (
            committer.group.handshake_format
            if isinstance(committer, Ours)
            else WireFormat.PUBLIC_MESSAGE
        )
        assert wire_format(commit) == expected_fmt
        gone = []
        for m in list(self.members.values()):
            if m is committer:
                m.merge_own(commit)
                continue
            removed_self = m.process_commit(commit, committer.name)
            assert removed_self == (m.name in removed)
            if removed_self:
                gone.append(self.members.pop(m.name))
        assert not set(removed) & set(self.members)
        self.epoch += 1
        if joiners:
            assert welcome is not None
            ours_oob = isinstance(committer, Ours) and not committer.group.ratchet_tree_extension
            if tree is None and ours_oob:
                tree = committer.tree()
            for name, client in joiners:
                self.members[name] = self.join(name, client, welcome, tree)
                joiner = "ours" if isinstance(client, Client) else "theirs"
                self.count(f"join {committer.side}->{joiner} {'oob' if tree else 'ext'}")
        self.check(gone)
        return gone

    def check(self, gone: list[Member]) -> None:
        """Everyone derives the same exporter secret and tree; everyone reads everyone."""
        members = list(self.members.values())
        secrets = {m.name: m.secret() for m in members}
        assert len(set(secrets.values())) == 1, secrets
        assert len({m.tree() for m in members}) == 1
        for m in members:
            if isinstance(m, Ours):
                assert m.group.epoch == self.epoch
                assert set(m.group.members) - {b""} == set(self.members)
        for sender in members:
            data = b"epoch %d from %s " % (self.epoch, sender.name) + self.rng.randbytes(40)
            msg = sender.send(data)
            assert wire_format(msg) == WireFormat.PRIVATE_MESSAGE
            payload = MLSMessage.from_bytes(msg).payload
            assert isinstance(payload, PrivateMessage) and payload.epoch == self.epoch
            for receiver in members:
                if receiver is not sender:
                    assert receiver.receive(msg, sender) == data
                    self.count(f"{sender.side}->{receiver.side}")
            for left in gone:  # removed members cannot read the new epoch
                if isinstance(left, Ours):
                    with pytest.raises(GroupInactiveError):
                        left.group.process(msg)
                else:
                    with pytest.raises(R.Error):
                        left.group.process_incoming_message(rs_msg(msg))

    def pick(self, side: str, exclude: tuple[bytes, ...] = ()) -> Member | None:
        pool = [m for m in self.members.values() if m.side == side and m.name not in exclude]
        return self.rng.choice(pool) if pool else None

    def removable(self, committer: Member, proposer: Member | None = None) -> bytes | None:
        """A member whose removal leaves at least one member of each side."""
        keep = {committer.name} | ({proposer.name} if proposer else set())
        choices = []
        for m in self.members.values():
            if m.name in keep:
                continue
            same_side = [o for o in self.members.values() if o.side == m.side]
            if len(same_side) > 1:
                choices.append(m.name)
        return self.rng.choice(sorted(choices)) if choices else None

    def step(self, side: str, action: str) -> None:
        committer = self.pick(side)
        assert committer is not None
        other = "theirs" if side == "ours" else "ours"
        size = len(self.members)
        if (action.startswith("remove") and size <= 3) or (action.startswith("add") and size >= 7):
            action = {"remove": "add", "add": "remove"}[action.split("-")[0]]
        self.count(f"{side} {action}")
        if action == "add":
            n = self.rng.choice([1, 2])
            cands = [self.candidate(self.rng.choice(["ours", "theirs"])) for _ in range(n)]
            commit, welcome, tree = committer.commit_add([kp for _, _, kp in cands])
            self.apply(committer, commit, tuple((nm, c) for nm, c, _ in cands), welcome, tree)
        elif action == "remove":
            target = self.removable(committer)
            assert target is not None
            commit = committer.commit_remove([target])
            self.apply(committer, commit, removed=(target,))
        elif action == "empty":
            self.apply(committer, committer.commit_empty())
        elif action == "update":
            commit = committer.commit_update()
            body = MLSMessage.from_bytes(commit).payload
            if isinstance(body, PublicMessage):  # the path is visible in a PublicMessage
                content = body.content.content
                assert isinstance(content, Commit) and content.path is not None
            self.apply(committer, commit)
        elif action == "propose-add":
            # A member of the other side proposes, the committer commits it by reference.
            proposer = self.pick(other)
            assert proposer is not None
            name, client, kp = self.candidate(self.rng.choice(["ours", "theirs"]))
            self._propose(proposer, proposer.propose_add(kp))
            commit, welcome, tree = committer.commit_proposals()
            self.apply(committer, commit, ((name, client),), welcome, tree)
        elif action == "propose-remove":
            proposer = self.pick(other)
            assert proposer is not None
            target = self.removable(committer, proposer)
            assert target is not None
            self._propose(proposer, proposer.propose_remove(target))
            commit, _, _ = committer.commit_proposals()
            self.apply(committer, commit, removed=(target,))
        else:  # pragma: no cover
            raise AssertionError(action)

    def _propose(self, proposer: Member, msg: bytes) -> None:
        for m in self.members.values():
            if m is not proposer:
                m.process_proposal(msg, proposer.name)

    def persist_ours(self) -> None:
        """Round-trip one of our members through storage mid-run."""
        for name, m in self.members.items():
            if isinstance(m, Ours):
                restored = m.client.group_from_bytes(m.group.to_bytes())
                assert restored.handshake_format == m.group.handshake_format
                self.members[name] = Ours(name, m.client, restored)
                return


ACTIONS = ["add", "empty", "propose-add", "remove", "update", "add", "propose-remove", "empty"]


def test_mixed_group_many_epochs() -> None:
    mixed = Mixed(random.Random(9420))
    founder = our_client(b"py-0", 9420)
    mixed.members[b"py-0"] = Ours(b"py-0", founder, founder.create_group(b"mixed-group"))
    first = mixed.members[b"py-0"]
    assert isinstance(first, Ours)
    first.group.ratchet_tree_extension = False  # toggled on for the first Welcome
    name, client, kp = mixed.candidate("theirs")
    commit, welcome, tree = first.commit_add([kp])
    mixed.apply(first, commit, ((name, client),), welcome, tree)

    epochs = 32
    for i in range(epochs):
        side = ("theirs", "ours")[i % 2]
        mixed.step(side, ACTIONS[(i // 2) % len(ACTIONS)])
        if i % 7 == 6:
            mixed.persist_ours()
    assert mixed.epoch == epochs + 1
    stats = mixed.stats
    # Every kind of step ran from both sides, and messages crossed every way.
    for side in ("ours", "theirs"):
        for action in ("add", "remove", "empty", "update", "propose-add", "propose-remove"):
            assert stats.get(f"{side} {action}", 0) > 0, (side, action, stats)
    for pair in ("ours->theirs", "theirs->ours", "ours->ours", "theirs->theirs"):
        assert stats[pair] > 0
    for committer in ("ours", "theirs"):
        for joiner in ("ours", "theirs"):
            for how in ("ext", "oob"):
                assert stats.get(f"join {committer}->{joiner} {how}", 0) > 0, sorted(stats)
