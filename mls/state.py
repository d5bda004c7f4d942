"""One member's group state for one epoch, and its versioned storage encoding.

``GroupState`` is immutable apart from the secret trees (their ratchets advance as messages
are sent and read); a commit produces a new ``GroupState`` and the group object swaps it in
only once everything checked out.

The storage encoding (not a wire format; it holds private keys and must go to protected
storage only) is ``"MLSG" || uint16 version || fields`` in RFC 9420's TLS presentation
syntax, decoded strictly (bounded lengths, no trailing bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from mls.codec import Reader, Writer, decode_exact
from mls.crypto.suite import CipherSuite, get_suite
from mls.errors import DecodeError, MlsError
from mls.group_context import GroupContext
from mls.key_schedule import EpochSecrets
from mls.messages import Proposal, ReInit, Sender
from mls.proposals import StoredProposal
from mls.secret_tree import SecretTree
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import PathPrivate

__all__ = [
    "STATE_VERSION",
    "GroupState",
    "PastEpoch",
    "clone_secret_tree",
    "decode_state",
    "encode_state",
]

MAGIC = b"MLSG"
STATE_VERSION = 2  # 2 added the pending ReInit; version 1 is still read
_SECRET_FIELDS = (
    "sender_data_secret",
    "encryption_secret",
    "exporter_secret",
    "external_secret",
    "confirmation_key",
    "membership_key",
    "resumption_psk",
    "epoch_authenticator",
    "init_secret",
)


def clone_secret_tree(suite: CipherSuite, tree: SecretTree) -> SecretTree:
    """An independent copy of ``tree`` (see ``SecretTree.copy``; ``suite`` is kept for
    callers of the older signature). Inbound messages no longer need one: ``Group`` reads
    them inside ``SecretTree.transaction()``."""
    return tree.copy()


@dataclass
class PastEpoch:
    """What we keep of an ended epoch to read late application messages."""

    context: GroupContext
    tree: RatchetTree
    secret_tree: SecretTree
    sender_data_secret: bytes = field(repr=False)


@dataclass(frozen=True)
class GroupState:
    suite: CipherSuite
    context: GroupContext
    tree: RatchetTree
    private: PathPrivate
    signature_priv: bytes = field(repr=False)
    secrets: EpochSecrets = field(repr=False)
    secret_tree: SecretTree = field(repr=False)
    interim_hash: bytes = b""
    proposals: dict[bytes, StoredProposal] = field(default_factory=dict, repr=False)
    past: tuple[PastEpoch, ...] = field(default=(), repr=False)
    resumption_psks: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)
    active: bool = True
    max_past_epochs: int = 2
    max_resumption_psks: int = 16
    # Set once a commit with a ReInit is applied: the group is closed for sending and waits
    # for the new group (RFC 9420 11.2).
    reinit: ReInit | None = None

    @property
    def leaf_index(self) -> int:
        return self.private.leaf_index

    @property
    def epoch(self) -> int:
        return self.context.epoch

    def resumption_psk(self, group_id: bytes, epoch: int) -> bytes | None:
        if group_id != self.context.group_id:
            return None
        if epoch == self.context.epoch:
            return self.secrets.resumption_psk
        for e, psk in self.resumption_psks:
            if e == epoch:
                return psk
        return None

    def ended(self) -> tuple[tuple[PastEpoch, ...], tuple[tuple[int, bytes], ...]]:
        """The past-epoch and resumption lists once this epoch ends (bounded)."""
        past = (
            PastEpoch(self.context, self.tree, self.secret_tree, self.secrets.sender_data_secret),
            *self.past,
        )[: self.max_past_epochs]
        psks = ((self.context.epoch, self.secrets.resumption_psk), *self.resumption_psks)
        return past, psks[: self.max_resumption_psks]

    @cached_property
    def context_bytes(self) -> bytes:
        return self.context.encode()

    def with_proposal(self, stored: StoredProposal) -> GroupState:
        cache = dict(self.proposals)
        cache[stored.ref] = stored
        return replace(self, proposals=cache)


# -- storage encoding ------------------------------------------------------------------------


def _write_secrets(w: Writer, s: EpochSecrets) -> None:
    for name in _SECRET_FIELDS:
        w.opaque(getattr(s, name))


def _read_secrets(r: Reader, suite: CipherSuite) -> EpochSecrets:
    values = {name: r.opaque(64) for name in _SECRET_FIELDS}
    return EpochSecrets(suite, **values)


def _write_stored(w: Writer, sp: StoredProposal) -> None:
    w.opaque(sp.ref).opaque(sp.proposal.to_bytes()).opaque(sp.sender.to_bytes())
    w.optional(sp.encryption_priv, Writer.opaque)


def _read_stored(r: Reader) -> StoredProposal:
    ref = r.opaque(64)
    proposal = Proposal.from_bytes(r.opaque())
    sender = Sender.from_bytes(r.opaque(16))
    priv = r.optional(lambda r2: r2.opaque(128))
    return StoredProposal(ref, proposal, sender, priv)


def _write_past(w: Writer, p: PastEpoch) -> None:
    w.opaque(p.context.encode()).opaque(p.tree.to_bytes()).opaque(p.secret_tree.to_bytes())
    w.opaque(p.sender_data_secret)


def encode_state(state: GroupState) -> bytes:
    w = Writer().raw(MAGIC).uint16(STATE_VERSION).uint16(state.suite.suite_id)
    w.opaque(state.context.encode()).opaque(state.tree.to_bytes())
    w.opaque(state.private.to_bytes()).opaque(state.signature_priv)
    _write_secrets(w, state.secrets)
    w.opaque(state.secret_tree.to_bytes()).opaque(state.interim_hash)
    w.vector(list(state.proposals.values()), _write_stored)
    w.vector(list(state.past), _write_past)
    w.vector(list(state.resumption_psks), lambda w2, kv: w2.uint64(kv[0]).opaque(kv[1]))
    w.uint8(1 if state.active else 0).uint16(state.max_past_epochs)
    w.uint16(state.max_resumption_psks)
    w.optional(state.reinit, lambda w2, ri: w2.opaque(ri.to_bytes()))
    return w.getvalue()


def _read_state(r: Reader) -> GroupState:
    if r.raw(4) != MAGIC:
        raise DecodeError("not a stored MLS group")
    version = r.uint16()
    if version not in (1, STATE_VERSION):
        raise DecodeError(f"unsupported stored group version {version}")
    try:
        suite = get_suite(r.uint16())
    except MlsError as exc:
        raise DecodeError(str(exc)) from None
    context = GroupContext.decode(r.opaque())
    tree = RatchetTree.from_bytes(suite, r.opaque())
    private = PathPrivate.from_bytes(r.opaque())
    signature_priv = r.opaque(128)
    secrets = _read_secrets(r, suite)
    secret_tree = SecretTree.from_bytes(suite, r.opaque())
    interim = r.opaque(64)
    stored = r.vector(_read_stored)

    def read_past(r2: Reader) -> PastEpoch:
        ctx = GroupContext.decode(r2.opaque())
        ptree = RatchetTree.from_bytes(suite, r2.opaque())
        st = SecretTree.from_bytes(suite, r2.opaque())
        return PastEpoch(ctx, ptree, st, r2.opaque(64))

    past = tuple(r.vector(read_past))
    psks = tuple(r.vector(lambda r2: (r2.uint64(), r2.opaque(64))))
    active_flag = r.uint8()
    if active_flag > 1:
        raise DecodeError("bad active flag")
    max_past, max_psks = r.uint16(), r.uint16()
    reinit = r.optional(lambda r2: ReInit.from_bytes(r2.opaque())) if version >= 2 else None
    if context.cipher_suite != suite.suite_id or private.leaf_index >= tree.n_leaves:
        raise DecodeError("stored group state is inconsistent")
    return GroupState(
        suite,
        context,
        tree,
        private,
        signature_priv,
        secrets,
        secret_tree,
        interim,
        {sp.ref: sp for sp in stored},
        past,
        psks,
        bool(active_flag),
        max_past,
        max_psks,
        reinit,
    )


def decode_state(data: bytes) -> GroupState:
    return decode_exact(data, _read_state)
