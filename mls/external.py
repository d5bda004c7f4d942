"""External commits, the joiner's side (RFC 9420 12.4.3.2): joining from a GroupInfo that
carries an ``external_pub`` extension, without a Welcome.

The joiner checks the GroupInfo (signature, tree, support for the group's extensions),
derives an init secret to the group's external public key (ExternalInit, section 8.3),
takes the leftmost free leaf, and commits an UpdatePath from it, signed as
``new_member_commit`` and sent as a PublicMessage. Its group state is the new epoch's; if
the members reject the commit (another commit won the epoch, policy), that state is
useless and a fresh GroupInfo is needed. The members' side is ``commit.process_commit``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mls.crypto.hpke import Rng
from mls.crypto.suite import CipherSuite
from mls.errors import MlsError, ValidationError
from mls.group_context import GroupContext
from mls.group_extensions import unsupported_reason
from mls.key_schedule import external_init_sender, key_schedule
from mls.messages import (
    AuthenticatedContent,
    Capabilities,
    Commit,
    Credential,
    ExtensionType,
    ExternalInit,
    ExternalPub,
    FramedContent,
    FramedContentAuthData,
    GroupInfo,
    LeafNode,
    LeafNodeSource,
    MLSMessage,
    Proposal,
    Remove,
    Sender,
    WireFormat,
    find_extension,
)
from mls.proposals import ResolvedProposal, apply_proposals
from mls.protection import protect_public, sign_content
from mls.secret_tree import SecretTree
from mls.state import GroupState
from mls.transcript import confirmation_tag, confirmed_hash, interim_hash
from mls.tree.ratchet_tree import RatchetTree
from mls.tree.treekem import create_update_path
from mls.welcome import verified_tree

__all__ = ["ExternalCommitError", "ExternalJoin", "create_external_commit", "parse_group_info"]


class ExternalCommitError(ValidationError):
    """A GroupInfo cannot be used to join by external commit."""


@dataclass(frozen=True)
class ExternalJoin:
    """The joiner's result: the new epoch's state and the commit (MLSMessage bytes,
    a PublicMessage) to send to the group."""

    state: GroupState
    commit: bytes


def create_external_commit(
    suite: CipherSuite,
    group_info: GroupInfo,
    *,
    signature_priv: bytes,
    credential: Credential,
    capabilities: Capabilities,
    rng: Rng,
    hpke_rng: Rng | None,
    ratchet_tree: RatchetTree | bytes | None = None,
    resync: bool = False,
    authenticated_data: bytes = b"",
    max_past_epochs: int = 2,
) -> ExternalJoin:
    """Join by external commit. ``resync``: also remove the leaf that already carries our
    credential (rejoining after losing state). Raises ExternalCommitError (and other
    ValidationError subclasses for a bad tree)."""
    try:
        ctx = GroupContext.decode(group_info.group_context)
    except MlsError as exc:
        raise ExternalCommitError(f"bad GroupInfo group context: {exc}") from None
    if ctx.cipher_suite != suite.suite_id:
        raise ExternalCommitError("GroupInfo is for another cipher suite")
    ext = find_extension(group_info.extensions, ExtensionType.EXTERNAL_PUB)
    if ext is None:
        raise ExternalCommitError("GroupInfo has no external_pub extension")
    try:
        external_pub = ExternalPub.from_bytes(ext.extension_data).external_pub
    except MlsError as exc:
        raise ExternalCommitError(f"bad external_pub extension: {exc}") from None
    if len(external_pub) != suite.npk:
        raise ExternalCommitError("external_pub has the wrong length")
    tree = verified_tree(suite, group_info, ctx, ratchet_tree, ExternalCommitError)

    sender = Sender.new_member_commit()
    signature_pub = suite.signature_public_key(signature_priv)
    proposals: list[Proposal] = []
    if resync:
        old = next((i for i, leaf in tree.leaves() if leaf.credential == credential), None)
        if old is None:
            raise ExternalCommitError("resync: no leaf with our credential in the group")
        proposals.append(Proposal(Remove(old)))
    elif any(leaf.signature_key == signature_pub for _, leaf in tree.leaves()):
        raise ExternalCommitError("our signature key is already in the group (use resync)")
    kem_output, init_secret = external_init_sender(suite, external_pub, rng=hpke_rng or rng)
    proposals.insert(0, Proposal(ExternalInit(kem_output)))

    tree = tree.copy()
    apply_proposals(tree, [ResolvedProposal(p, sender, None) for p in proposals])
    # A placeholder in the leftmost free leaf (unmerged bookkeeping as for an Add); the
    # UpdatePath replaces it with our signed leaf.
    placeholder = LeafNode(
        encryption_key=b"",
        signature_key=signature_pub,
        credential=credential,
        capabilities=capabilities,
        leaf_node_source=LeafNodeSource.UPDATE,
    )
    reason = unsupported_reason(placeholder, ctx.extensions)
    if reason is not None:
        raise ExternalCommitError(f"we cannot join: our leaf {reason}")
    me = tree.add_leaf(placeholder)
    prov = replace(ctx, epoch=ctx.epoch + 1)
    created = create_update_path(
        tree,
        me,
        group_id=ctx.group_id,
        signature_priv=signature_priv,
        group_context=lambda th: replace(prov, tree_hash=th).encode(),
        rng=rng,
        hpke_rng=hpke_rng,
    )

    commit = Commit(tuple(proposals), created.update_path)
    content = FramedContent(ctx.group_id, ctx.epoch, sender, bytes(authenticated_data), commit)
    wire_format = WireFormat.PUBLIC_MESSAGE
    signature = sign_content(suite, wire_format, content, signature_priv, ctx)
    interim_before = interim_hash(suite, ctx.confirmed_transcript_hash, group_info.confirmation_tag)
    confirmed = confirmed_hash(suite, interim_before, wire_format, content, signature)
    new_ctx = replace(prov, tree_hash=tree.tree_hash(), confirmed_transcript_hash=confirmed)
    ks = key_schedule(suite, init_secret, created.commit_secret, None, new_ctx)
    tag = confirmation_tag(suite, ks.epoch.confirmation_key, confirmed)
    ac = AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, tag))
    message = protect_public(suite, ac, group_context=ctx, membership_key=None)
    secrets = ks.epoch
    state = GroupState(
        suite=suite,
        context=new_ctx,
        tree=tree,
        private=created.private.pruned(tree),
        signature_priv=signature_priv,
        secrets=secrets,
        secret_tree=SecretTree(suite, secrets.encryption_secret, tree.n_leaves),
        interim_hash=interim_hash(suite, confirmed, tag),
        max_past_epochs=max_past_epochs,
    )
    return ExternalJoin(state, MLSMessage(message).to_bytes())


def parse_group_info(data: bytes) -> GroupInfo:
    """The GroupInfo in MLSMessage bytes; DecodeError or ExternalCommitError otherwise."""
    payload = MLSMessage.from_bytes(data).payload
    if not isinstance(payload, GroupInfo):
        raise ExternalCommitError("expected an MLSMessage carrying a GroupInfo")
    return payload
