"""PrivateMessage protection (RFC 9420 section 6.3).

Content is encrypted under the sender's secret-tree key for (leaf, generation), with the first
four bytes of the nonce XORed with a random reuse_guard; the sender data (leaf, generation,
reuse_guard) is encrypted under a key derived from sender_data_secret and a sample of the
content ciphertext.
"""

from __future__ import annotations

from mls.crypto.hpke import Rng
from mls.crypto.suite import CipherSuite
from mls.errors import ValidationError
from mls.group_context import GroupContext
from mls.messages.common import ContentType, SenderType, WireFormat
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    PrivateContentAAD,
    PrivateMessage,
    PrivateMessageContent,
    Sender,
    SenderData,
    SenderDataAAD,
)
from mls.protection.content import UnverifiedContent
from mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce

__all__ = ["protect_private", "ratchet_type_for", "unprotect_private"]


def ratchet_type_for(content_type: ContentType) -> RatchetType:
    """Application data uses the application ratchet, proposals and commits the handshake one."""
    if content_type == ContentType.APPLICATION:
        return RatchetType.APPLICATION
    return RatchetType.HANDSHAKE


def _guarded(nonce: bytes, reuse_guard: bytes) -> bytes:
    if len(reuse_guard) != 4 or len(nonce) < 4:
        raise ValueError("reuse_guard is 4 bytes and the nonce at least 4")
    head = int.from_bytes(nonce[:4], "big") ^ int.from_bytes(reuse_guard, "big")
    return head.to_bytes(4, "big") + nonce[4:]


def protect_private(
    suite: CipherSuite,
    ac: AuthenticatedContent,
    *,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    rng: Rng,
    padding: int = 0,
    pad_block: int = 0,
) -> PrivateMessage:
    """Encrypt our signed member content as a PrivateMessage.

    Consumes the next generation of the sender's ratchet. ``padding`` adds that many zero
    bytes; ``pad_block`` then rounds the plaintext up to a multiple of it (0: no rounding).
    ``rng`` supplies the 4-byte reuse_guard."""
    content = ac.content
    if ac.wire_format != WireFormat.PRIVATE_MESSAGE:
        raise ValueError("content was signed for another wire format")
    if content.sender.sender_type != SenderType.MEMBER:
        raise ValueError("only members send PrivateMessages")
    if padding < 0 or pad_block < 0:
        raise ValueError("padding must be non-negative")
    content_type = content.content_type
    leaf = content.sender.index

    plaintext = PrivateMessageContent(content.content, ac.auth, padding).to_bytes()
    if pad_block > 1 and len(plaintext) % pad_block:
        plaintext += bytes(pad_block - len(plaintext) % pad_block)

    key = secret_tree.next_key(leaf, ratchet_type_for(content_type))
    reuse_guard = rng(4)
    if len(reuse_guard) != 4:
        raise ValueError("rng returned the wrong number of bytes")
    aad = PrivateContentAAD(
        content.group_id, content.epoch, content_type, content.authenticated_data
    ).to_bytes()
    ciphertext = suite.aead_seal(key.key, _guarded(key.nonce, reuse_guard), aad, plaintext)

    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    sd_aad = SenderDataAAD(content.group_id, content.epoch, content_type).to_bytes()
    sender_data = SenderData(leaf, key.generation, reuse_guard).to_bytes()
    encrypted_sender_data = suite.aead_seal(sd_key, sd_nonce, sd_aad, sender_data)
    return PrivateMessage(
        content.group_id,
        content.epoch,
        content_type,
        content.authenticated_data,
        encrypted_sender_data,
        ciphertext,
    )


def unprotect_private(
    suite: CipherSuite,
    msg: PrivateMessage,
    *,
    group_context: GroupContext,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    context_bytes: bytes | None = None,
) -> UnverifiedContent:
    """Decrypt sender data and content; the signature is checked by
    ``UnverifiedContent.verify`` once the caller has the sender's key.

    Raises ValidationError (wrong group or epoch), CryptoError (AEAD failure, or a secret-tree
    key that is unavailable: reused, too old, too far ahead, leaf outside the tree) or
    DecodeError (malformed sender data or plaintext, non-zero padding).

    The secret-tree key of the claimed (leaf, generation) is only peeked at until the content
    AEAD and the padding check succeed, and consumed after: an on-path forgery that keeps the
    sender data intact cannot burn the generation the genuine message needs, while a replay
    of a message already accepted is refused (KeyReuseError). ``context_bytes`` is
    ``group_context`` already encoded, if the caller has it (it is bound into the signature).
    """
    if msg.group_id != group_context.group_id:
        raise ValidationError("PrivateMessage is for another group")
    if msg.epoch != group_context.epoch:
        raise ValidationError("PrivateMessage is for another epoch")
    content_type = msg.content_type

    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, msg.ciphertext)
    sd_aad = SenderDataAAD(msg.group_id, msg.epoch, content_type).to_bytes()
    sender_data = SenderData.from_bytes(
        suite.aead_open(sd_key, sd_nonce, sd_aad, msg.encrypted_sender_data)
    )

    leaf, kind = sender_data.leaf_index, ratchet_type_for(content_type)
    key = secret_tree.peek_key(leaf, kind, sender_data.generation)
    aad = PrivateContentAAD(
        msg.group_id, msg.epoch, content_type, msg.authenticated_data
    ).to_bytes()
    plaintext = suite.aead_open(
        key.key, _guarded(key.nonce, sender_data.reuse_guard), aad, msg.ciphertext
    )
    pmc = PrivateMessageContent.from_bytes(plaintext, content_type)
    secret_tree.consume(leaf, kind, sender_data.generation)

    content = FramedContent(
        msg.group_id,
        msg.epoch,
        Sender.member(sender_data.leaf_index),
        msg.authenticated_data,
        pmc.content,
    )
    ac = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, content, pmc.auth)
    if context_bytes is None:
        context_bytes = group_context.encode()
    return UnverifiedContent(suite, ac, context_bytes, sender_data.generation)
