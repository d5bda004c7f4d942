"""Message framing and protection (RFC 9420 section 6), sans-I/O.

Outbound: ``authenticate`` (or ``sign_content`` + ``AuthenticatedContent`` for commits), then
``protect_public`` / ``protect_private``. Inbound: ``unprotect_public`` /
``unprotect_private`` give an ``UnverifiedContent``; its ``verify(signature_pub)`` gives the
``VerifiedContent`` the group logic acts on.
"""

from __future__ import annotations

from mls.protection.content import (
    FRAMED_CONTENT_TBS_LABEL,
    UnverifiedContent,
    VerifiedContent,
    authenticate,
    content_tbs,
    sign_content,
)
from mls.protection.private import protect_private, ratchet_type_for, unprotect_private
from mls.protection.public import membership_tag, protect_public, unprotect_public

__all__ = [
    "FRAMED_CONTENT_TBS_LABEL",
    "UnverifiedContent",
    "VerifiedContent",
    "authenticate",
    "content_tbs",
    "membership_tag",
    "protect_private",
    "protect_public",
    "ratchet_type_for",
    "sign_content",
    "unprotect_private",
    "unprotect_public",
]
