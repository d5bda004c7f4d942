"""RFC 9420 (MLS) in pure Python, sans I/O.

The group API: ``Client`` makes KeyPackages, creates groups and joins them (Welcome or
external commit); ``Group`` adds, removes, updates, commits, encrypts and processes
MLSMessage bytes. All seven RFC 9420 cipher suites are implemented. Lower layers (wire
structs, crypto, tree, key schedule) live in the subpackages.
"""

from __future__ import annotations

from mls.client import Client, ExternalJoinOutput, ReInitOutput
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
    ReInitError,
    ReInitPendingError,
    UnexpectedMessageError,
    UnknownMemberError,
    WrongEpochError,
    WrongGroupError,
)
from mls.external import ExternalCommitError
from mls.group import Group
from mls.group_extensions import ExtensionsError
from mls.inbound import CheckFn, InboundCheck, ProposalKind, ProposalView, ResolvedView
from mls.key_packages import KeyPackageError
from mls.messages import ContentType, SenderType, WireFormat
from mls.proposals import DictPskStore, ProposalError, PskError, PskStore
from mls.redacted import SecretBytes
from mls.welcome import WelcomeError

__all__ = [
    "ApplicationMessage",
    "CheckFn",
    "Client",
    "CommitApplied",
    "CommitError",
    "CommitOutput",
    "ContentType",
    "CryptoError",
    "DecodeError",
    "DictPskStore",
    "DuplicateProposalError",
    "ExtensionsError",
    "ExternalCommitError",
    "ExternalJoinOutput",
    "Group",
    "GroupInactiveError",
    "InboundCheck",
    "KeyPackageError",
    "MlsError",
    "PendingCommitError",
    "ProposalError",
    "ProposalKind",
    "ProposalMessage",
    "ProposalView",
    "PskError",
    "PskStore",
    "ReInitError",
    "ReInitOutput",
    "ReInitPendingError",
    "ResolvedView",
    "SecretBytes",
    "SenderType",
    "UnexpectedMessageError",
    "UnknownMemberError",
    "ValidationError",
    "WelcomeError",
    "WireFormat",
    "WrongEpochError",
    "WrongGroupError",
]
