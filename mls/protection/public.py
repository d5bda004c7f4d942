"""PublicMessage protection (RFC 9420 section 6.2): signature plus, for members, a
membership tag = MAC(membership_key, AuthenticatedContentTBM)."""

from __future__ import annotations

from mls.codec import Writer
from mls.crypto.suite import CipherSuite
from mls.errors import CryptoError, ValidationError
from mls.group_context import GroupContext
from mls.messages.common import ContentType, SenderType, WireFormat
from mls.messages.framing import AuthenticatedContent, PublicMessage
from mls.protection.content import UnverifiedContent, content_tbs

__all__ = ["membership_tag", "protect_public", "unprotect_public"]


def _tbm(ac: AuthenticatedContent, group_context: bytes) -> bytes:
    """AuthenticatedContentTBM = FramedContentTBS || FramedContentAuthData."""
    w = Writer().raw(content_tbs(ac.wire_format, ac.content, group_context))
    ac.auth.encode(w)
    return w.getvalue()


def membership_tag(
    suite: CipherSuite,
    membership_key: bytes,
    ac: AuthenticatedContent,
    group_context: GroupContext | bytes,
) -> bytes:
    gc = group_context if isinstance(group_context, bytes) else group_context.encode()
    return suite.mac(membership_key, _tbm(ac, gc))


def protect_public(
    suite: CipherSuite,
    ac: AuthenticatedContent,
    *,
    group_context: GroupContext,
    membership_key: bytes | None,
) -> PublicMessage:
    """Wrap our signed content as a PublicMessage. ``membership_key`` is required exactly
    when the sender is a member (it is the epoch's membership_key)."""
    if ac.wire_format != WireFormat.PUBLIC_MESSAGE:
        raise ValueError("content was signed for another wire format")
    if not _allowed(ac):
        raise ValueError("this sender type cannot send this content type in a PublicMessage")
    _check_epoch_local(ac, group_context)
    if ac.content.sender.sender_type != SenderType.MEMBER:
        return PublicMessage(ac.content, ac.auth, None)
    if membership_key is None:
        raise ValueError("member senders need the membership key")
    tag = membership_tag(suite, membership_key, ac, group_context)
    return PublicMessage(ac.content, ac.auth, tag)


# RFC 9420 section 6: what each non-member sender type may send.
_ALLOWED: dict[SenderType, tuple[ContentType, ...]] = {
    SenderType.MEMBER: (ContentType.PROPOSAL, ContentType.COMMIT),
    SenderType.EXTERNAL: (ContentType.PROPOSAL,),
    SenderType.NEW_MEMBER_PROPOSAL: (ContentType.PROPOSAL,),
    SenderType.NEW_MEMBER_COMMIT: (ContentType.COMMIT,),
}


def _allowed(ac: AuthenticatedContent) -> bool:
    return ac.content.content_type in _ALLOWED[ac.content.sender.sender_type]


def _check_epoch_local(ac: AuthenticatedContent, gc: GroupContext) -> None:
    if ac.content.group_id != gc.group_id or ac.content.epoch != gc.epoch:
        raise ValueError("content is not for this group context's group and epoch")


def unprotect_public(
    suite: CipherSuite,
    msg: PublicMessage,
    *,
    group_context: GroupContext,
    membership_key: bytes | None,
) -> UnverifiedContent:
    """Check group, epoch and (for member senders) the membership tag; the signature is
    checked by ``UnverifiedContent.verify`` once the caller has the sender's key.

    Raises ValidationError (wrong group/epoch, application data in the clear, a content type
    the sender type may not send) or CryptoError
    (bad membership tag)."""
    content = msg.content
    if content.group_id != group_context.group_id:
        raise ValidationError("PublicMessage is for another group")
    if content.epoch != group_context.epoch:
        raise ValidationError("PublicMessage is for another epoch")
    gc = group_context.encode()
    ac = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, content, msg.auth)
    if not _allowed(ac):
        # Includes application data, which is never sent in the clear.
        raise ValidationError("this sender type cannot send this content type in a PublicMessage")
    if content.sender.sender_type == SenderType.MEMBER:
        if membership_key is None:
            raise ValueError("member senders need the membership key")
        tag = msg.membership_tag
        if tag is None or not suite.verify_mac(membership_key, _tbm(ac, gc), tag):
            raise CryptoError("PublicMessage membership tag does not verify")
    return UnverifiedContent(suite, ac, gc)
