"""What an application's policy hook sees of an inbound message before the group acts on it.

``Group.process(message, check=fn)`` calls ``fn(InboundCheck(...))`` once the message is
decrypted and its signature verified and, for a commit, once its proposals are resolved and
validated, but before anything is stored or installed. If ``fn`` raises, the exception
propagates and the group is exactly as it was (the message can be processed again later).

Everything here describes authenticated content: the sender signed it. Identities are the
basic-credential identities of the leaves concerned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from mls.events import UnexpectedMessageError, UnknownMemberError
from mls.group_context import GroupContext
from mls.messages import (
    Add,
    Commit,
    ContentType,
    ExtensionType,
    ExternalInit,
    ExternalSenders,
    GroupContextExtensions,
    PreSharedKey,
    PreSharedKeyID,
    Proposal,
    ReInit,
    Remove,
    Sender,
    SenderType,
    Update,
    WireFormat,
)
from mls.protection import UnverifiedContent, VerifiedContent
from mls.tree.ratchet_tree import RatchetTree

__all__ = [
    "CheckFn",
    "InboundCheck",
    "ProposalKind",
    "ProposalView",
    "ResolvedView",
    "inbound_check",
    "proposal_view",
    "verify_sender",
]


class ProposalKind(StrEnum):
    ADD = "add"
    UPDATE = "update"
    REMOVE = "remove"
    PSK = "psk"
    REINIT = "reinit"
    EXTERNAL_INIT = "external_init"
    GCE = "gce"  # GroupContextExtensions
    UNKNOWN = "unknown"  # a proposal type RFC 9420 does not define (never accepted)


@dataclass(frozen=True)
class ProposalView:
    """One proposal as a commit (or a proposal message) would apply it.

    ``proposer``/``proposer_leaf``: the member that proposed it (for a commit's by-value
    proposals, the committer); both None for external and new-member senders.
    ``by_reference``: the commit named it by ProposalRef (it was sent earlier).
    Kind-specific fields are None unless they apply:

    * add: ``identity`` and ``signature_key`` of the KeyPackage's leaf.
    * update: ``identity`` and new ``signature_key`` of the proposer's leaf.
    * remove: ``identity`` (the removed member's) and ``leaf`` (its index).
    * gce: ``extensions``, the complete new group-context list as ``(type, data)``.
    * psk: ``psk``, the PreSharedKeyID. reinit: ``reinit``, the ReInit body.
    """

    kind: ProposalKind
    proposal_type: int
    proposer: bytes | None
    proposer_leaf: int | None
    by_reference: bool = False
    identity: bytes | None = None
    signature_key: bytes | None = None
    leaf: int | None = None
    extensions: tuple[tuple[int, bytes], ...] | None = None
    psk: PreSharedKeyID | None = None
    reinit: ReInit | None = None


# The name the channel layer's brief uses for the view of a resolved proposal.
ResolvedView = ProposalView


@dataclass(frozen=True)
class InboundCheck:
    """An authenticated inbound message, for a policy decision.

    ``sender``/``sender_leaf``: identity and leaf index of a member sender; None for other
    sender types. ``new_member``: the identity a new_member_proposal / new_member_commit
    sender claims (the joining client's credential). ``proposals``: for a proposal message
    its one proposal, for a commit every proposal it applies in order (empty for
    application messages). ``epoch`` is the epoch the message was sent in.
    """

    content_type: ContentType
    epoch: int
    sender: bytes | None
    sender_leaf: int | None
    authenticated_data: bytes
    proposals: tuple[ProposalView, ...] = ()
    sender_type: SenderType = SenderType.MEMBER
    wire_format: WireFormat = WireFormat.PRIVATE_MESSAGE
    new_member: bytes | None = None


CheckFn = Callable[[InboundCheck], None]


def _identity(tree: RatchetTree, leaf: int) -> bytes | None:
    node = tree.leaf(leaf) if 0 <= leaf < tree.n_leaves else None
    return None if node is None else node.credential.identity


def proposal_view(
    proposal: Proposal, sender: Sender, tree: RatchetTree, *, by_reference: bool = False
) -> ProposalView:
    """Describe ``proposal`` from ``sender`` against ``tree`` (the epoch's tree before the
    commit applies anything)."""
    member = sender.sender_type == SenderType.MEMBER
    base = ProposalView(
        ProposalKind.UNKNOWN,
        proposal.proposal_type,
        _identity(tree, sender.index) if member else None,
        sender.index if member else None,
        by_reference,
    )
    body = proposal.body
    if isinstance(body, Add):
        leaf = body.key_package.leaf_node
        return replace(
            base,
            kind=ProposalKind.ADD,
            identity=leaf.credential.identity,
            signature_key=leaf.signature_key,
        )
    if isinstance(body, Update):
        return replace(
            base,
            kind=ProposalKind.UPDATE,
            identity=body.leaf_node.credential.identity,
            signature_key=body.leaf_node.signature_key,
            leaf=base.proposer_leaf,
        )
    if isinstance(body, Remove):
        return replace(
            base,
            kind=ProposalKind.REMOVE,
            identity=_identity(tree, body.removed),
            leaf=body.removed,
        )
    if isinstance(body, GroupContextExtensions):
        exts = tuple((e.extension_type, e.extension_data) for e in body.extensions)
        return replace(base, kind=ProposalKind.GCE, extensions=exts)
    if isinstance(body, PreSharedKey):
        return replace(base, kind=ProposalKind.PSK, psk=body.psk)
    if isinstance(body, ReInit):
        return replace(base, kind=ProposalKind.REINIT, reinit=body)
    if isinstance(body, ExternalInit):
        return replace(base, kind=ProposalKind.EXTERNAL_INIT)
    return base


def inbound_check(
    vc: VerifiedContent, tree: RatchetTree, proposals: tuple[ProposalView, ...] = ()
) -> InboundCheck:
    """The InboundCheck of verified content ``vc`` (``tree``: the epoch's tree)."""
    sender = vc.sender
    member = sender.sender_type == SenderType.MEMBER
    new_member = None
    content = vc.content.content
    if (
        sender.sender_type == SenderType.NEW_MEMBER_PROPOSAL
        and isinstance(content, Proposal)
        and isinstance(content.body, Add)
    ):
        new_member = content.body.key_package.leaf_node.credential.identity
    elif (
        sender.sender_type == SenderType.NEW_MEMBER_COMMIT
        and isinstance(content, Commit)
        and content.path is not None
    ):
        new_member = content.path.leaf_node.credential.identity
    return InboundCheck(
        content_type=vc.content_type,
        epoch=vc.content.epoch,
        sender=_identity(tree, sender.index) if member else None,
        sender_leaf=sender.index if member else None,
        authenticated_data=vc.content.authenticated_data,
        proposals=proposals,
        sender_type=sender.sender_type,
        wire_format=vc.wire_format,
        new_member=new_member,
    )


def verify_sender(
    uc: UnverifiedContent, tree: RatchetTree, context: GroupContext
) -> VerifiedContent:
    """Check the signature of inbound content with its sender's key: a member's leaf in
    ``tree``, an external sender of ``context``'s external_senders, the KeyPackage leaf of
    a new_member_proposal Add, the UpdatePath leaf of a new_member_commit (12.4.3.2)."""
    sender = uc.sender
    st = sender.sender_type
    if st == SenderType.MEMBER:
        leaf = tree.leaf(sender.index) if sender.index < tree.n_leaves else None
        if leaf is None:
            raise UnknownMemberError(f"sender leaf {sender.index} is blank")
        return uc.verify(leaf.signature_key)
    if st == SenderType.EXTERNAL:
        ext = next(
            (d for t, d in context.extensions if t == ExtensionType.EXTERNAL_SENDERS),
            None,
        )
        senders = ExternalSenders.from_bytes(ext).senders if ext is not None else ()
        if sender.index >= len(senders):
            raise UnknownMemberError("unknown external sender")
        return uc.verify(senders[sender.index].signature_key)
    if st == SenderType.NEW_MEMBER_PROPOSAL:
        content = uc.authenticated_content.content.content
        if not (isinstance(content, Proposal) and isinstance(content.body, Add)):
            raise UnexpectedMessageError("new_member_proposal must carry an Add")
        return uc.verify(content.body.key_package.leaf_node.signature_key)
    if st == SenderType.NEW_MEMBER_COMMIT:
        # Signed by the joiner with the key of the leaf in its UpdatePath (12.4.3.2).
        content = uc.authenticated_content.content.content
        if not (isinstance(content, Commit) and content.path is not None):
            raise UnexpectedMessageError("new_member_commit must carry a commit with a path")
        return uc.verify(content.path.leaf_node.signature_key)
    raise UnexpectedMessageError(f"unknown sender type {st}")
