"""Framing our own content: sign, then wrap as a PublicMessage or PrivateMessage MLSMessage."""

from __future__ import annotations

from mls.crypto.hpke import Rng
from mls.messages import (
    AuthenticatedContent,
    FramedContent,
    MLSMessage,
    Sender,
    WireFormat,
)
from mls.messages.framing import Content
from mls.protection import authenticate, protect_private, protect_public
from mls.state import GroupState

__all__ = ["own_content", "seal", "sign_and_seal"]


def own_content(state: GroupState, content: Content, aad: bytes = b"") -> FramedContent:
    ctx = state.context
    return FramedContent(ctx.group_id, ctx.epoch, Sender.member(state.leaf_index), aad, content)


def seal(state: GroupState, ac: AuthenticatedContent, *, rng: Rng, padding: int = 0) -> bytes:
    """Protect signed content for the current epoch (a PrivateMessage consumes a ratchet
    generation of our leaf in the live secret tree)."""
    if ac.wire_format == WireFormat.PUBLIC_MESSAGE:
        pub = protect_public(
            state.suite,
            ac,
            group_context=state.context,
            membership_key=state.secrets.membership_key,
        )
        return MLSMessage(pub).to_bytes()
    priv = protect_private(
        state.suite,
        ac,
        secret_tree=state.secret_tree,
        sender_data_secret=state.secrets.sender_data_secret,
        rng=rng,
        padding=padding,
    )
    return MLSMessage(priv).to_bytes()


def sign_and_seal(
    state: GroupState,
    content: Content,
    wire_format: WireFormat,
    *,
    rng: Rng,
    aad: bytes = b"",
    padding: int = 0,
) -> tuple[AuthenticatedContent, bytes]:
    """Non-commit content (application data, proposals) -> (signed content, MLSMessage)."""
    framed = own_content(state, content, aad)
    ac = authenticate(state.suite, wire_format, framed, state.signature_priv, state.context_bytes)
    return ac, seal(state, ac, rng=rng, padding=padding)
