"""Signing and verifying framed content (RFC 9420 sections 6.1-6.2).

Outbound content is an ``AuthenticatedContent`` we signed ourselves. Inbound content is first an
``UnverifiedContent`` (decoded, MAC/AEAD checked, signature not yet checked: the caller must look
up the sender's signature key) and becomes a ``VerifiedContent`` only through
``UnverifiedContent.verify``. The rest of the group logic acts on ``VerifiedContent`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mls.crypto.labels import sign_with_label, verify_with_label
from mls.crypto.suite import CipherSuite
from mls.errors import CryptoError
from mls.group_context import GroupContext
from mls.messages.common import ContentType, SenderType, WireFormat
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    Sender,
    framed_content_tbs,
)

__all__ = [
    "FRAMED_CONTENT_TBS_LABEL",
    "UnverifiedContent",
    "VerifiedContent",
    "authenticate",
    "content_tbs",
    "sign_content",
]

FRAMED_CONTENT_TBS_LABEL = "FramedContentTBS"
_CONTEXT_SENDERS = (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT)


def content_tbs(
    wire_format: WireFormat, content: FramedContent, group_context: GroupContext | bytes | None
) -> bytes:
    """FramedContentTBS. The group context is bound only for member / new_member_commit
    senders; for the other sender types it is ignored, so callers may always pass it."""
    if content.sender.sender_type in _CONTEXT_SENDERS:
        if group_context is None:
            raise ValueError("member and new_member_commit content needs the group context")
        gc = group_context if isinstance(group_context, bytes) else group_context.encode()
        return framed_content_tbs(wire_format, content, gc)
    return framed_content_tbs(wire_format, content, None)


def sign_content(
    suite: CipherSuite,
    wire_format: WireFormat,
    content: FramedContent,
    signature_priv: bytes,
    group_context: GroupContext | bytes | None,
) -> bytes:
    """SignWithLabel(priv, "FramedContentTBS", FramedContentTBS) -> signature.

    For a commit, sign first, then compute the confirmation tag from the new transcript hash
    (``mls.transcript``) and assemble the ``AuthenticatedContent``."""
    tbs = content_tbs(wire_format, content, group_context)
    return sign_with_label(suite, signature_priv, FRAMED_CONTENT_TBS_LABEL, tbs)


def authenticate(
    suite: CipherSuite,
    wire_format: WireFormat,
    content: FramedContent,
    signature_priv: bytes,
    group_context: GroupContext | bytes | None,
    *,
    confirmation_tag: bytes | None = None,
) -> AuthenticatedContent:
    """Sign ``content`` and wrap it as an outbound ``AuthenticatedContent``.

    ``confirmation_tag`` is required exactly for commits. A commit's tag depends on its
    signature, so commits are usually built with ``sign_content`` + ``AuthenticatedContent``."""
    if wire_format not in (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE):
        raise ValueError("framed content travels as a PublicMessage or PrivateMessage")
    signature = sign_content(suite, wire_format, content, signature_priv, group_context)
    auth = FramedContentAuthData(signature, confirmation_tag)
    return AuthenticatedContent(wire_format, content, auth)


# Only this module's verification path may build a VerifiedContent.
_VERIFIED = object()


@dataclass(frozen=True)
class VerifiedContent:
    """Inbound framed content whose signature (and MAC or AEAD) checked out.

    Built only by ``UnverifiedContent.verify``. For a commit, the confirmation tag is *not*
    checked yet: that needs the next epoch's confirmation key (``mls.transcript``)."""

    authenticated_content: AuthenticatedContent
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _VERIFIED:
            raise TypeError("VerifiedContent comes only from UnverifiedContent.verify()")

    @property
    def wire_format(self) -> WireFormat:
        return self.authenticated_content.wire_format

    @property
    def content(self) -> FramedContent:
        return self.authenticated_content.content

    @property
    def auth(self) -> FramedContentAuthData:
        return self.authenticated_content.auth

    @property
    def sender(self) -> Sender:
        return self.authenticated_content.content.sender

    @property
    def content_type(self) -> ContentType:
        return self.authenticated_content.content.content_type

    def to_bytes(self) -> bytes:
        """Encoded AuthenticatedContent (input to proposal refs and transcript hashes)."""
        return self.authenticated_content.to_bytes()


@dataclass(frozen=True)
class UnverifiedContent:
    """Inbound framed content before its signature is checked.

    ``group_context`` is the encoded context of the epoch the message claims (bound into the
    signature for member and new_member_commit senders). ``generation`` is the secret-tree
    generation for a PrivateMessage, None for a PublicMessage."""

    suite: CipherSuite
    authenticated_content: AuthenticatedContent
    group_context: bytes
    generation: int | None = None

    @property
    def sender(self) -> Sender:
        return self.authenticated_content.content.sender

    @property
    def wire_format(self) -> WireFormat:
        return self.authenticated_content.wire_format

    @property
    def content_type(self) -> ContentType:
        return self.authenticated_content.content.content_type

    def verify(self, signature_pub: bytes) -> VerifiedContent:
        """Check the signature with the sender's key; raises CryptoError if it fails."""
        ac = self.authenticated_content
        tbs = content_tbs(ac.wire_format, ac.content, self.group_context)
        if not verify_with_label(
            self.suite, signature_pub, FRAMED_CONTENT_TBS_LABEL, tbs, ac.auth.signature
        ):
            raise CryptoError("framed content signature does not verify")
        return VerifiedContent(ac, _VERIFIED)
