"""Proposals (RFC 9420 sections 12.1-12.3): the per-epoch cache, resolving a commit's
ProposalOrRef list, validating each proposal and the list as a whole, and applying the list
to a (provisional) ratchet tree.

PSK values come from outside: external PSKs through a ``PskStore`` (by psk_id), resumption
PSKs through a lookup over the group's own past epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from mls.crypto.suite import SUITES, CipherSuite
from mls.errors import MlsError, ValidationError
from mls.group_context import GroupContext
from mls.group_extensions import ExtensionsError, check_group_extensions, unsupported_reason
from mls.key_packages import KeyPackageError, validate_key_package
from mls.messages import (
    MLS10,
    Add,
    ExtensionType,
    ExternalInit,
    GroupContextExtensions,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ProposalOrRef,
    ProposalRef,
    ProposalType,
    PSKType,
    ReInit,
    Remove,
    RequiredCapabilities,
    ResumptionPSKUsage,
    Sender,
    SenderType,
    Update,
)
from mls.tree.ratchet_tree import RatchetTree, TreeError
from mls.tree.validation import LeafValidationError, validate_leaf_node

__all__ = [
    "AppliedProposals",
    "DictPskStore",
    "ProposalError",
    "PskError",
    "PskStore",
    "ResolvedProposal",
    "ResumptionLookup",
    "StoredProposal",
    "apply_proposals",
    "check_tree_supports",
    "path_required",
    "required_capabilities",
    "resolve_proposals",
    "resolve_psks",
    "validate_external_proposal_list",
    "validate_proposal",
    "validate_proposal_list",
]

# Types whose commit may omit the UpdatePath (RFC 9420 section 12.4, "path required").
_PATHLESS = frozenset({ProposalType.ADD, ProposalType.PSK, ProposalType.REINIT})


class ProposalError(ValidationError):
    """A proposal, or a commit's proposal list, breaks a rule of RFC 9420 section 12."""


class PskError(ProposalError):
    """A PSK named by a proposal or a Welcome is unknown or malformed."""


class PskStore(Protocol):
    """External PSKs by psk_id (the application provisions them)."""

    def get(self, psk_id: bytes) -> bytes | None: ...


@dataclass
class DictPskStore:
    psks: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    def get(self, psk_id: bytes) -> bytes | None:
        return self.psks.get(psk_id)


# (group_id, epoch) -> resumption_psk of that epoch, or None if not kept.
ResumptionLookup = Callable[[bytes, int], bytes | None]


@dataclass(frozen=True)
class StoredProposal:
    """A proposal received (or sent) in the current epoch, kept until the epoch ends.

    ``encryption_priv`` is set only for our own Update: the leaf key we need if another
    member commits it."""

    ref: bytes
    proposal: Proposal
    sender: Sender
    encryption_priv: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ResolvedProposal:
    proposal: Proposal
    sender: Sender
    ref: bytes | None  # None when sent by value in the commit


def resolve_proposals(
    items: Iterable[ProposalOrRef],
    cache: dict[bytes, StoredProposal],
    committer: Sender,
) -> list[ResolvedProposal]:
    """Look references up in the cache; by-value proposals are the committer's own."""
    out = []
    for item in items:
        if isinstance(item, ProposalRef):
            stored = cache.get(item.ref)
            if stored is None:
                raise ProposalError("commit references a proposal we do not have")
            out.append(ResolvedProposal(stored.proposal, stored.sender, item.ref))
        else:
            out.append(ResolvedProposal(item, committer, None))
    return out


def required_capabilities(context: GroupContext) -> RequiredCapabilities | None:
    for ext_type, data in context.extensions:
        if ext_type == ExtensionType.REQUIRED_CAPABILITIES:
            try:
                return RequiredCapabilities.from_bytes(data)
            except MlsError as exc:
                raise ProposalError(f"bad required_capabilities extension: {exc}") from None
    return None


# Who may send each proposal type; new_member_commit stands for the by-value proposals of
# an external commit (RFC 9420 12.1.8, 12.2).
_ALLOWED_SENDERS: dict[int, tuple[SenderType, ...]] = {
    ProposalType.ADD: (SenderType.MEMBER, SenderType.EXTERNAL, SenderType.NEW_MEMBER_PROPOSAL),
    ProposalType.UPDATE: (SenderType.MEMBER,),
    ProposalType.REMOVE: (SenderType.MEMBER, SenderType.EXTERNAL, SenderType.NEW_MEMBER_COMMIT),
    ProposalType.PSK: (SenderType.MEMBER, SenderType.EXTERNAL, SenderType.NEW_MEMBER_COMMIT),
    ProposalType.GROUP_CONTEXT_EXTENSIONS: (SenderType.MEMBER, SenderType.EXTERNAL),
    ProposalType.EXTERNAL_INIT: (SenderType.NEW_MEMBER_COMMIT,),
    ProposalType.REINIT: (SenderType.MEMBER, SenderType.EXTERNAL),
}


def validate_proposal(
    suite: CipherSuite,
    proposal: Proposal,
    sender: Sender,
    *,
    context: GroupContext,
    tree: RatchetTree,
    now: int | None,
) -> None:
    """Checks of one proposal on its own (RFC 9420 section 12.1). Raises ProposalError."""
    body = proposal.body
    allowed = _ALLOWED_SENDERS.get(proposal.proposal_type)
    if allowed is None:
        raise ProposalError(f"unsupported proposal type {proposal.proposal_type}")
    if sender.sender_type not in allowed:
        raise ProposalError(f"sender type {sender.sender_type.name} cannot send this proposal")
    rc = required_capabilities(context)
    ext_types = [t for t, _ in context.extensions]
    if isinstance(body, Add):
        try:
            validate_key_package(
                suite,
                body.key_package,
                now=now,
                required_capabilities=rc,
                group_extension_types=ext_types,
            )
        except KeyPackageError as exc:
            raise ProposalError(f"Add: {exc}") from None
    elif isinstance(body, Update):
        idx = sender.index
        old = tree.leaf(idx) if idx < tree.n_leaves else None
        if old is None:
            raise ProposalError("Update from a blank leaf")
        try:
            validate_leaf_node(
                suite,
                body.leaf_node,
                source=LeafNodeSource.UPDATE,
                group_id=context.group_id,
                leaf_index=idx,
                required_capabilities=rc,
                tree=tree,
                replacing=idx,
                group_extension_types=ext_types,
            )
        except LeafValidationError as exc:
            raise ProposalError(f"Update: {exc}") from None
        if body.leaf_node.encryption_key == old.encryption_key:
            raise ProposalError("Update reuses the leaf's encryption key")
    elif isinstance(body, Remove):
        if body.removed >= tree.n_leaves or tree.leaf(body.removed) is None:
            raise ProposalError(f"Remove of blank or absent leaf {body.removed}")
    elif isinstance(body, PreSharedKey):
        psk = body.psk
        if len(psk.psk_nonce) != suite.nh:
            raise PskError("PSK nonce has the wrong length")
        if (
            psk.psktype == PSKType.RESUMPTION
            and psk.usage != ResumptionPSKUsage.APPLICATION
            and context.epoch != 0
        ):
            # reinit/branch PSKs (11.2, 11.3) belong only in the first commit of the new
            # group, which its creator alone processes; anywhere else they are invalid.
            raise PskError("only application resumption PSKs may be proposed")
    elif isinstance(body, ReInit):
        if body.version < context.version:
            raise ProposalError("ReInit to an older protocol version")
        if body.version != MLS10:
            raise ProposalError(f"ReInit to protocol version {body.version} we do not speak")
        if body.cipher_suite not in SUITES:
            raise ProposalError(f"ReInit to cipher suite {body.cipher_suite} we do not implement")
        try:
            check_group_extensions((e.extension_type, e.extension_data) for e in body.extensions)
        except ExtensionsError as exc:
            raise ProposalError(f"ReInit extensions: {exc}") from None
    elif isinstance(body, ExternalInit):
        if len(body.kem_output) != suite.hpke.kem.n_enc:
            raise ProposalError("ExternalInit kem_output has the wrong length")
    elif isinstance(body, GroupContextExtensions):
        # Support by the members is checked on the tree the commit produces (12.1.7: those
        # added by the same commit count, those removed do not): see check_tree_supports.
        try:
            check_group_extensions((e.extension_type, e.extension_data) for e in body.extensions)
        except ExtensionsError as exc:
            raise ProposalError(f"GroupContextExtensions: {exc}") from None


def check_tree_supports(tree: RatchetTree, extensions: tuple[tuple[int, bytes], ...]) -> None:
    """Every member of ``tree`` supports the group extensions (RFC 9420 12.1.7, 13.4)."""
    for idx, leaf in tree.leaves():
        try:
            reason = unsupported_reason(leaf, extensions)
        except ExtensionsError as exc:
            raise ProposalError(str(exc)) from None
        if reason is not None:
            raise ProposalError(f"leaf {idx} {reason}")


def validate_proposal_list(
    resolved: list[ResolvedProposal],
    committer: int,
    *,
    tree: RatchetTree,
) -> None:
    """Checks across a commit's proposals (RFC 9420 section 12.2), member committer."""
    touched: set[int] = set()
    psk_ids: set[bytes] = set()
    gce = 0
    if len(resolved) > 1 and any(isinstance(rp.proposal.body, ReInit) for rp in resolved):
        raise ProposalError("a ReInit must be committed alone")
    for rp in resolved:
        body = rp.proposal.body
        if isinstance(body, Update):
            if rp.sender.index == committer:
                raise ProposalError("commit includes an Update from the committer")
            target = rp.sender.index
        elif isinstance(body, Remove):
            if body.removed == committer:
                raise ProposalError("commit removes the committer")
            target = body.removed
        elif isinstance(body, PreSharedKey):
            raw = body.psk.to_bytes()
            if raw in psk_ids:
                raise ProposalError("commit names the same PSK twice")
            psk_ids.add(raw)
            continue
        elif isinstance(body, GroupContextExtensions):
            gce += 1
            if gce > 1:
                raise ProposalError("commit has more than one GroupContextExtensions")
            continue
        else:
            continue
        if target in touched:
            raise ProposalError(f"leaf {target} is updated or removed more than once")
        touched.add(target)


def validate_external_proposal_list(
    resolved: list[ResolvedProposal], joiner: LeafNode, *, tree: RatchetTree
) -> None:
    """The proposal list of an external commit (RFC 9420 12.2): exactly one ExternalInit,
    at most one Remove, which must remove an old leaf of the joiner itself (a "resync": the
    same credential identity), any number of distinct PSKs, and nothing else."""
    inits = removes = 0
    psk_ids: set[bytes] = set()
    for rp in resolved:
        body = rp.proposal.body
        if isinstance(body, ExternalInit):
            inits += 1
        elif isinstance(body, Remove):
            removes += 1
            old = tree.leaf(body.removed) if body.removed < tree.n_leaves else None
            if old is None or old.credential != joiner.credential:
                raise ProposalError("an external commit may only remove the joiner's old leaf")
        elif isinstance(body, PreSharedKey):
            raw = body.psk.to_bytes()
            if raw in psk_ids:
                raise ProposalError("commit names the same PSK twice")
            psk_ids.add(raw)
        else:
            raise ProposalError(f"proposal type {rp.proposal.proposal_type} in an external commit")
    if inits != 1:
        raise ProposalError("an external commit needs exactly one ExternalInit")
    if removes > 1:
        raise ProposalError("an external commit removes at most one leaf")


def path_required(resolved: Iterable[ResolvedProposal]) -> bool:
    types = [rp.proposal.proposal_type for rp in resolved]
    return not types or any(t not in _PATHLESS for t in types)


@dataclass
class AppliedProposals:
    """What applying a commit's proposals changed."""

    added: list[tuple[int, KeyPackage]] = field(default_factory=list)
    removed: list[tuple[int, LeafNode]] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    extensions: tuple[tuple[int, bytes], ...] | None = None
    psks: list[PreSharedKeyID] = field(default_factory=list)
    reinit: ReInit | None = None


def apply_proposals(tree: RatchetTree, resolved: list[ResolvedProposal]) -> AppliedProposals:
    """Apply in RFC 9420 section 12.3 order (GroupContextExtensions, Update, Remove, Add) to
    ``tree`` (mutated: pass a provisional copy). Adds are checked against the members left
    after the removes (no repeated signature or encryption keys)."""
    out = AppliedProposals()
    bodies = [(rp, rp.proposal.body) for rp in resolved]
    for _, body in bodies:
        if isinstance(body, GroupContextExtensions):
            out.extensions = tuple((e.extension_type, e.extension_data) for e in body.extensions)
        elif isinstance(body, PreSharedKey):
            out.psks.append(body.psk)
        elif isinstance(body, ReInit):
            out.reinit = body
    try:
        for rp, body in bodies:
            if isinstance(body, Update):
                tree.update_leaf(rp.sender.index, body.leaf_node)
                out.updated.append(rp.sender.index)
        for _, body in bodies:
            if isinstance(body, Remove):
                leaf = tree.leaf(body.removed)
                if leaf is None:
                    raise ProposalError(f"Remove of blank leaf {body.removed}")
                out.removed.append((body.removed, leaf))
                tree.remove_leaf(body.removed)
        adds = [body.key_package for _, body in bodies if isinstance(body, Add)]
        if adds:
            # Keys of the adds must be distinct from each other and from every member left:
            # one pass over the tree with the (few) new keys, not a set of all members' keys.
            sig_keys: set[bytes] = set()
            enc_keys: set[bytes] = set()
            for kp in adds:
                ln = kp.leaf_node
                if ln.signature_key in sig_keys or ln.encryption_key in enc_keys:
                    raise ProposalError("Add of a client already in the group")
                sig_keys.add(ln.signature_key)
                enc_keys.add(ln.encryption_key)
            if tree.has_leaf_key(sig_keys, enc_keys):
                raise ProposalError("Add of a client already in the group")
            for kp in adds:
                out.added.append((tree.add_leaf(kp.leaf_node), kp))
            _check_credentials(tree, [i for i, _ in out.added])
    except TreeError as exc:
        raise ProposalError(str(exc)) from None
    return out


def _check_credentials(tree: RatchetTree, added: list[int]) -> None:
    """RFC 9420 7.3 for added leaves, against the members of the resulting tree: each side
    supports the other's credential type."""
    new = [(i, tree.leaf(i)) for i in added]
    for idx, leaf in tree.leaves():
        for i, joiner in new:
            if i == idx or joiner is None:
                continue
            if joiner.credential.credential_type not in leaf.capabilities.credentials:
                raise ProposalError(
                    f"leaf {idx} does not support the credential type of the added leaf {i}"
                )
            if leaf.credential.credential_type not in joiner.capabilities.credentials:
                raise ProposalError(
                    f"added leaf {i} does not support the credential type of leaf {idx}"
                )


def resolve_psks(
    suite: CipherSuite,
    psk_ids: Iterable[PreSharedKeyID],
    store: PskStore | None,
    resumption: ResumptionLookup | None,
) -> list[tuple[PreSharedKeyID, bytes]]:
    """Look every PSK up; raises PskError when one is missing."""
    out = []
    for pid in psk_ids:
        value: bytes | None
        if pid.psktype == PSKType.EXTERNAL:
            value = store.get(pid.psk_id) if store is not None else None
        else:
            value = resumption(pid.psk_group_id, pid.psk_epoch) if resumption else None
        if value is None:
            raise PskError(f"unknown {pid.psktype.name.lower()} PSK")
        if len(pid.psk_nonce) != suite.nh:
            raise PskError("PSK nonce has the wrong length")
        out.append((pid, value))
    return out
