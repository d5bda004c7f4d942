"""RFC 9420 (MLS) in pure Python, sans I/O.

The group API: ``Client`` makes KeyPackages, creates and joins groups; ``Group`` adds,
removes, updates, commits, encrypts and processes MLSMessage bytes. Lower layers (wire
structs, crypto, tree, key schedule) live in the subpackages.
"""

from __future__ import annotations

from mls.client import Client
from mls.commit import CommitError
from mls.errors import CryptoError, DecodeError, MlsError, ValidationError
from mls.events import (
    ApplicationMessage,
    CommitApplied,
    CommitOutput,
    DuplicateProposalError,
    GroupInactiveError,
    PendingCommitError,
    ProposalMessage,
    UnexpectedMessageError,
    UnknownMemberError,
    WrongEpochError,
    WrongGroupError,
)
from mls.group import Group
from mls.key_packages import KeyPackageError
from mls.messages import WireFormat
from mls.proposals import DictPskStore, ProposalError, PskError, PskStore
from mls.welcome import WelcomeError

__all__ = [
    "ApplicationMessage",
    "Client",
    "CommitApplied",
    "CommitError",
    "CommitOutput",
    "CryptoError",
    "DecodeError",
    "DictPskStore",
    "DuplicateProposalError",
    "Group",
    "GroupInactiveError",
    "KeyPackageError",
    "MlsError",
    "PendingCommitError",
    "ProposalError",
    "ProposalMessage",
    "PskError",
    "PskStore",
    "UnexpectedMessageError",
    "UnknownMemberError",
    "ValidationError",
    "WelcomeError",
    "WireFormat",
    "WrongEpochError",
    "WrongGroupError",
]
