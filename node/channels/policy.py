"""The no-fork rule's pure decisions (PROTOCOL.md section 12): who commits an epoch, which
commits a member accepts, and which of two competing branches wins.

Nothing here reads a clock or arrival order: every member that knows the same commits
reaches the same answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from mls import ContentType, InboundCheck, ProposalKind
from node.channels.content import CHANNEL_EXTENSION, ChannelInfo, CommitHeader
from node.channels.errors import PayloadError, Rejected
from node.core.errors import IdentityError
from node.core.identity import PeerId

__all__ = [
    "BACKUP_DELAY_S",
    "COMMIT_INTERVAL_S",
    "MAX_RETAINED_EPOCHS",
    "QUIET_S",
    "Branch",
    "better_branch",
    "channel_info",
    "check_commit",
    "committer_order",
    "leaf_is_peer",
]

MAX_RETAINED_EPOCHS = 5  # K: past epoch states kept for rewinds and late messages
COMMIT_INTERVAL_S = 1.0  # R3: at most one commit per second per committer
BATCH_DELAY_S = 0.1  # the designated committer waits this long to batch intents
BACKUP_DELAY_S = 10.0  # R2: backup i commits after i x this with intents still pending
ACK_WAIT_S = 3.0  # R4: wait at most this long for members' acknowledgements...
QUIET_S = 1.0  # ...then this long without a competing commit before merging


def committer_order(
    epoch: int, group_id: bytes, admins: Sequence[tuple[int, PeerId]]
) -> list[PeerId]:
    """R2: the admins (leaf index, PeerId) sorted by SHA-256(epoch || leaf || group id)."""

    def key(entry: tuple[int, PeerId]) -> bytes:
        leaf, _ = entry
        return hashlib.sha256(
            epoch.to_bytes(8, "big") + leaf.to_bytes(4, "big") + group_id
        ).digest()

    return [peer for _, peer in sorted(admins, key=key)]


def channel_info(extensions: Sequence[tuple[int, bytes]]) -> ChannelInfo:
    """The channel extension of a group context (exactly one must be there)."""
    found = [data for kind, data in extensions if kind == CHANNEL_EXTENSION]
    if len(found) != 1:
        raise PayloadError("group context has no channel extension")
    return ChannelInfo.decode(found[0])


def leaf_is_peer(identity: bytes, signature_key: bytes) -> PeerId:
    """A member leaf must be verifiably its PeerId: the credential identity is a PeerId and
    the leaf signs with that PeerId's own key."""
    try:
        peer = PeerId.from_bytes(identity)
    except IdentityError:
        raise Rejected("bad_member", "credential identity is not a PeerId") from None
    if peer.public_key_bytes != signature_key:
        raise Rejected("bad_member", f"leaf of {peer.short()} does not sign with its key")
    return peer


def check_commit(check: InboundCheck, info: ChannelInfo, members: set[PeerId]) -> CommitHeader:
    """Policy for an authenticated commit before it is applied (raises Rejected).

    Only admins commit; a commit only adds, removes and replaces the channel extension; every
    added leaf is verifiably its PeerId; the new channel info keeps the name, names only
    members as admins and keeps at least one; the header decodes.
    """
    if check.content_type != ContentType.COMMIT:
        raise Rejected("unexpected_content", "not a commit")
    if check.sender is None:
        raise Rejected("commit_not_allowed", "commit from a non-member")
    committer = PeerId.from_bytes(check.sender)
    if committer not in info.admins:
        raise Rejected("commit_not_allowed", f"{committer.short()} is not an admin")
    try:
        header = CommitHeader.decode(check.authenticated_data)
    except PayloadError as exc:
        raise Rejected("commit_not_allowed", str(exc)) from None
    added: set[PeerId] = set()
    removed: set[PeerId] = set()
    new_info = info
    for view in check.proposals:
        if view.by_reference:
            raise Rejected("commit_not_allowed", "proposals by reference are not used")
        if view.kind == ProposalKind.ADD:
            assert view.identity is not None and view.signature_key is not None
            added.add(leaf_is_peer(view.identity, view.signature_key))
        elif view.kind == ProposalKind.REMOVE:
            if view.identity is not None:
                removed.add(PeerId.from_bytes(view.identity))
        elif view.kind == ProposalKind.GCE:
            assert view.extensions is not None
            try:
                new_info = channel_info(view.extensions)
            except PayloadError as exc:
                raise Rejected("commit_not_allowed", str(exc)) from None
            if len(view.extensions) != 1:
                raise Rejected("commit_not_allowed", "unexpected group context extensions")
        else:
            raise Rejected("commit_not_allowed", f"{view.kind} proposals are not used")
    # MLS applies removes before adds: a member removed and added again (a re-add, 12.7)
    # is a member after the commit.
    after = (members - removed) | added
    if new_info.name != info.name:
        raise Rejected("commit_not_allowed", "the channel name cannot change")
    if not new_info.admins or not set(new_info.admins) <= after:
        raise Rejected("commit_not_allowed", "admins must be members, at least one")
    return header


@dataclass(frozen=True)
class Branch:
    """What R6 compares of one branch from a fork point: its first commit and its depth."""

    commit_hash: bytes
    committer: PeerId
    slot: int  # the committer's place in the parent epoch's committer order
    removed: frozenset[PeerId]  # members the first commit removes
    authors: frozenset[PeerId]  # committers of every commit along the branch's best path
    depth: int  # commits along the branch's best path, this one included


def better_branch(a: Branch, b: Branch) -> Branch:
    """R6 among valid branches from one parent (both already passed eligibility):
    strong removal, then depth, then designated slot, then the lowest commit hash."""
    a_removed_by_b = bool(a.authors & b.removed)
    b_removed_by_a = bool(b.authors & a.removed)
    if a_removed_by_b != b_removed_by_a:
        return b if a_removed_by_b else a
    if a.depth != b.depth:
        return a if a.depth > b.depth else b
    if a.slot != b.slot:
        return a if a.slot < b.slot else b
    return a if a.commit_hash < b.commit_hash else b
