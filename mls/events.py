"""What the group API returns: frozen dataclasses, plus the group-level typed errors."""

from __future__ import annotations

from dataclasses import dataclass

from mls.errors import MlsError, ValidationError
from mls.messages import Proposal, ReInit

__all__ = [
    "ApplicationMessage",
    "CommitApplied",
    "CommitOutput",
    "DuplicateProposalError",
    "GroupInactiveError",
    "PendingCommitError",
    "ProposalMessage",
    "ReInitError",
    "ReInitPendingError",
    "UnexpectedMessageError",
    "UnknownMemberError",
    "WrongEpochError",
    "WrongGroupError",
]


@dataclass(frozen=True)
class CommitOutput:
    """Our commit, held pending until ``merge_pending_commit()``. ``welcome`` is set when the
    commit adds members; ``group_info`` (MLSMessage) describes the new epoch."""

    commit: bytes
    welcome: bytes | None
    group_info: bytes | None = None


@dataclass(frozen=True)
class ApplicationMessage:
    sender: bytes  # the sender's basic-credential identity
    data: bytes
    authenticated_data: bytes = b""
    epoch: int = 0


@dataclass(frozen=True)
class ProposalMessage:
    """A proposal stored in the group's cache until the epoch's commit."""

    ref: bytes
    proposal: Proposal
    sender: bytes | None  # identity of a member sender; None for external senders


@dataclass(frozen=True)
class CommitApplied:
    epoch: int  # the new epoch (unchanged when we were removed)
    committer: bytes
    added: tuple[bytes, ...] = ()
    removed: tuple[bytes, ...] = ()
    removed_self: bool = False
    own: bool = False
    # The group context extensions differ from the previous epoch's (read Group.extensions).
    extensions_changed: bool = False
    authenticated_data: bytes = b""  # the commit's, as its committer signed it
    # An external commit: ``committer`` joined by itself (and is the last of ``added``).
    external: bool = False
    # The commit applied a ReInit: the group is closed; move to the new group (11.2).
    reinit: ReInit | None = None


class WrongGroupError(ValidationError):
    """The message belongs to another group."""


class WrongEpochError(ValidationError):
    """The message's epoch is not one we can process (future, or too old)."""


class DuplicateProposalError(ValidationError):
    """This proposal is already in the cache (replayed)."""


class UnexpectedMessageError(ValidationError):
    """A message kind the group cannot process (Welcome, KeyPackage, GroupInfo, ...)."""


class UnknownMemberError(ValidationError):
    """No member has the given identity, or a sender leaf is blank."""


class GroupInactiveError(MlsError):
    """We were removed from this group; it can no longer send or receive."""


class ReInitPendingError(GroupInactiveError):
    """A ReInit was committed: the group no longer sends or takes handshake messages."""


class ReInitError(ValidationError):
    """A reinitialization step does not fit the committed ReInit (or there is none)."""


class PendingCommitError(MlsError):
    """A commit of ours is pending (or none is, for merge/clear)."""
