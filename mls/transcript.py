"""Transcript hashes and confirmation tags (RFC 9420 section 8.2).

    confirmed_[n] = Hash(interim_[n-1] || ConfirmedTranscriptHashInput_[n])
    interim_[n]   = Hash(confirmed_[n] || InterimTranscriptHashInput_[n])
    confirmation_tag = MAC(confirmation_key_[n], confirmed_[n])

A new group starts with an empty confirmed hash and the interim hash over the tag computed
with epoch 0's confirmation key (``initial``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mls.crypto.suite import CipherSuite
from mls.errors import CryptoError, ValidationError
from mls.messages.common import ContentType, WireFormat
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    confirmed_transcript_hash_input,
    interim_transcript_hash_input,
)

__all__ = [
    "TranscriptHashes",
    "confirmation_tag",
    "confirmed_hash",
    "initial",
    "interim_hash",
    "next_hashes",
    "verify_confirmation_tag",
]


@dataclass(frozen=True)
class TranscriptHashes:
    """The pair a group keeps per epoch (public values: no secrets)."""

    confirmed: bytes
    interim: bytes


def confirmed_hash(
    suite: CipherSuite,
    interim_before: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    signature: bytes,
) -> bytes:
    """confirmed_transcript_hash of the epoch a commit creates (needs only its signature)."""
    if content.content_type != ContentType.COMMIT:
        raise ValueError("only commits enter the transcript")
    return suite.hash(
        interim_before + confirmed_transcript_hash_input(wire_format, content, signature)
    )


def interim_hash(suite: CipherSuite, confirmed: bytes, tag: bytes) -> bytes:
    return suite.hash(confirmed + interim_transcript_hash_input(tag))


def confirmation_tag(suite: CipherSuite, confirmation_key: bytes, confirmed: bytes) -> bytes:
    return suite.mac(confirmation_key, confirmed)


def verify_confirmation_tag(
    suite: CipherSuite, confirmation_key: bytes, confirmed: bytes, tag: bytes
) -> None:
    """Constant-time check; raises CryptoError on mismatch."""
    if not suite.verify_mac(confirmation_key, confirmed, tag):
        raise CryptoError("confirmation tag does not verify")


def initial(suite: CipherSuite, confirmation_key: bytes) -> TranscriptHashes:
    """Epoch 0 of a new group: empty confirmed hash, interim over its confirmation tag."""
    tag = confirmation_tag(suite, confirmation_key, b"")
    return TranscriptHashes(b"", interim_hash(suite, b"", tag))


def next_hashes(
    suite: CipherSuite,
    interim_before: bytes,
    commit: AuthenticatedContent,
    confirmation_key: bytes | None = None,
) -> TranscriptHashes:
    """Both hashes after a commit carrying its confirmation tag.

    With ``confirmation_key`` (the new epoch's), the commit's tag is verified first (raises
    CryptoError). Raises ValidationError if the content is not a commit with a tag."""
    content = commit.content
    tag = commit.auth.confirmation_tag
    if content.content_type != ContentType.COMMIT or tag is None:
        raise ValidationError("transcript hashes advance only with a confirmed commit")
    confirmed = confirmed_hash(
        suite, interim_before, commit.wire_format, content, commit.auth.signature
    )
    if confirmation_key is not None:
        verify_confirmation_tag(suite, confirmation_key, confirmed, tag)
    return TranscriptHashes(confirmed, interim_hash(suite, confirmed, tag))
