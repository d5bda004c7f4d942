"""Message framing (RFC 9420 section 6): Sender, FramedContent, PublicMessage, PrivateMessage,
the PrivateMessage plaintext pieces, the byte strings that get signed/MACed/hashed, and the
top-level MLSMessage.

Decoding yields unverified structures; signature, membership tag and AEAD checks belong to the
group logic. ``PrivateMessage`` keeps its ciphertext opaque.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from mls.codec import Reader, Writer, decode_exact
from mls.errors import DecodeError
from mls.messages._util import enum_value
from mls.messages.commit import Commit
from mls.messages.common import MLS10, ContentType, SenderType, Wire, WireFormat
from mls.messages.key_package import KeyPackage
from mls.messages.proposals import Proposal
from mls.messages.welcome import GroupInfo, Welcome

__all__ = [
    "AuthenticatedContent",
    "Content",
    "FramedContent",
    "FramedContentAuthData",
    "MLSMessage",
    "MLSPayload",
    "PrivateContentAAD",
    "PrivateMessage",
    "PrivateMessageContent",
    "PublicMessage",
    "Sender",
    "SenderData",
    "SenderDataAAD",
    "confirmed_transcript_hash_input",
    "content_type_of",
    "framed_content_tbs",
    "interim_transcript_hash_input",
]

# application_data (bytes), a Proposal or a Commit, selected by ContentType.
Content = bytes | Proposal | Commit


def content_type_of(content: Content) -> ContentType:
    if isinstance(content, Proposal):
        return ContentType.PROPOSAL
    if isinstance(content, Commit):
        return ContentType.COMMIT
    return ContentType.APPLICATION


def _write_content(w: Writer, content: Content) -> None:
    if isinstance(content, Proposal | Commit):
        content.encode(w)
    else:
        w.opaque(content)


def _read_content(r: Reader, content_type: ContentType) -> Content:
    if content_type == ContentType.APPLICATION:
        return r.opaque()
    if content_type == ContentType.PROPOSAL:
        return Proposal.decode(r)
    return Commit.decode(r)


@dataclass(frozen=True, slots=True)
class Sender(Wire):
    """``index`` is the leaf index (member) or the external_senders index (external); it is 0
    and not encoded for the new_member_* types."""

    sender_type: SenderType
    index: int = 0

    def __post_init__(self) -> None:
        if self.sender_type not in (SenderType.MEMBER, SenderType.EXTERNAL) and self.index:
            raise ValueError("new_member senders carry no index")

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index)

    @classmethod
    def external(cls, sender_index: int) -> Sender:
        return cls(SenderType.EXTERNAL, sender_index)

    @classmethod
    def new_member_proposal(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_PROPOSAL)

    @classmethod
    def new_member_commit(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_COMMIT)

    def encode(self, w: Writer) -> None:
        w.uint8(self.sender_type)
        if self.sender_type in (SenderType.MEMBER, SenderType.EXTERNAL):
            w.uint32(self.index)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        st = enum_value(SenderType, r.uint8())
        if st in (SenderType.MEMBER, SenderType.EXTERNAL):
            return cls(st, r.uint32())
        return cls(st)


@dataclass(frozen=True, slots=True)
class FramedContent(Wire):
    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content: Content

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id).uint64(self.epoch)
        self.sender.encode(w)
        w.opaque(self.authenticated_data).uint8(content_type_of(self.content))
        _write_content(w, self.content)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        group_id = r.opaque()
        epoch = r.uint64()
        sender = Sender.decode(r)
        authenticated_data = r.opaque()
        ct = enum_value(ContentType, r.uint8())
        return cls(group_id, epoch, sender, authenticated_data, _read_content(r, ct))


@dataclass(frozen=True, slots=True)
class FramedContentAuthData:
    """``confirmation_tag`` is present exactly for commits; the content type comes from the
    enclosing structure, so ``decode`` takes it as an argument."""

    signature: bytes
    confirmation_tag: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.opaque(self.signature)
        if self.confirmation_tag is not None:
            w.opaque(self.confirmation_tag)

    def to_bytes(self) -> bytes:
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader, content_type: ContentType) -> Self:
        signature = r.opaque()
        tag = r.opaque() if content_type == ContentType.COMMIT else None
        return cls(signature, tag)


def _check_auth(content_type: ContentType, auth: FramedContentAuthData) -> None:
    if (auth.confirmation_tag is not None) != (content_type == ContentType.COMMIT):
        raise ValueError("confirmation_tag must be present exactly for commits")


@dataclass(frozen=True, slots=True)
class PublicMessage(Wire):
    """``membership_tag`` is present exactly when the sender is a member."""

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = None

    def __post_init__(self) -> None:
        _check_auth(self.content.content_type, self.auth)
        is_member = self.content.sender.sender_type == SenderType.MEMBER
        if (self.membership_tag is not None) != is_member:
            raise ValueError("membership_tag must be present exactly for member senders")

    def encode(self, w: Writer) -> None:
        self.content.encode(w)
        self.auth.encode(w)
        if self.membership_tag is not None:
            w.opaque(self.membership_tag)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        content = FramedContent.decode(r)
        auth = FramedContentAuthData.decode(r, content.content_type)
        tag = r.opaque() if content.sender.sender_type == SenderType.MEMBER else None
        return cls(content, auth, tag)


@dataclass(frozen=True, slots=True)
class PrivateMessage(Wire):
    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id).uint64(self.epoch).uint8(self.content_type)
        w.opaque(self.authenticated_data).opaque(self.encrypted_sender_data)
        w.opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        group_id = r.opaque()
        epoch = r.uint64()
        ct = enum_value(ContentType, r.uint8())
        return cls(group_id, epoch, ct, r.opaque(), r.opaque(), r.opaque())


@dataclass(frozen=True, slots=True)
class PrivateMessageContent:
    """The AEAD plaintext of a PrivateMessage: content, auth data, then ``padding`` zero bytes.

    Its content type is known only from the enclosing PrivateMessage, hence the argument to
    ``decode``/``from_bytes``. Non-zero padding is rejected (RFC 9420 section 6.3.1).
    """

    content: Content
    auth: FramedContentAuthData
    padding: int = 0

    def __post_init__(self) -> None:
        _check_auth(content_type_of(self.content), self.auth)
        if self.padding < 0:
            raise ValueError("negative padding")

    @property
    def content_type(self) -> ContentType:
        return content_type_of(self.content)

    def encode(self, w: Writer) -> None:
        _write_content(w, self.content)
        self.auth.encode(w)
        w.raw(bytes(self.padding))

    def to_bytes(self) -> bytes:
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader, content_type: ContentType) -> Self:
        """Consumes the rest of ``r`` (the padding runs to the end of the plaintext)."""
        content = _read_content(r, content_type)
        auth = FramedContentAuthData.decode(r, content_type)
        padding = r.raw(r.remaining)
        if padding.count(0) != len(padding):
            raise DecodeError("non-zero padding in PrivateMessageContent")
        return cls(content, auth, len(padding))

    @classmethod
    def from_bytes(cls, data: bytes, content_type: ContentType) -> Self:
        return decode_exact(data, lambda r: cls.decode(r, content_type))


@dataclass(frozen=True, slots=True)
class SenderData(Wire):
    leaf_index: int
    generation: int
    reuse_guard: bytes  # exactly 4 bytes

    def __post_init__(self) -> None:
        if len(self.reuse_guard) != 4:
            raise ValueError("reuse_guard must be 4 bytes")

    def encode(self, w: Writer) -> None:
        w.uint32(self.leaf_index).uint32(self.generation).raw(self.reuse_guard)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.uint32(), r.uint32(), r.raw(4))


@dataclass(frozen=True, slots=True)
class SenderDataAAD(Wire):
    group_id: bytes
    epoch: int
    content_type: ContentType

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id).uint64(self.epoch).uint8(self.content_type)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.uint64(), enum_value(ContentType, r.uint8()))


@dataclass(frozen=True, slots=True)
class PrivateContentAAD(Wire):
    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id).uint64(self.epoch).uint8(self.content_type)
        w.opaque(self.authenticated_data)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.uint64(), enum_value(ContentType, r.uint8()), r.opaque())


_FRAMED_FORMATS = (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE)


@dataclass(frozen=True, slots=True)
class AuthenticatedContent(Wire):
    """Input to proposal references and transcript hashes (RFC 9420 section 6.1)."""

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def __post_init__(self) -> None:
        if self.wire_format not in _FRAMED_FORMATS:
            raise ValueError("AuthenticatedContent needs a public or private message format")
        _check_auth(self.content.content_type, self.auth)

    def encode(self, w: Writer) -> None:
        w.uint16(self.wire_format)
        self.content.encode(w)
        self.auth.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        wf = enum_value(WireFormat, r.uint16())
        if wf not in _FRAMED_FORMATS:
            raise DecodeError(f"wire format {wf} does not carry framed content")
        content = FramedContent.decode(r)
        return cls(wf, content, FramedContentAuthData.decode(r, content.content_type))


def framed_content_tbs(
    wire_format: WireFormat, content: FramedContent, group_context: bytes | None
) -> bytes:
    """FramedContentTBS. ``group_context`` (encoded GroupContext) is required for member and
    new_member_commit senders and must be None for the others."""
    needs_context = content.sender.sender_type in (
        SenderType.MEMBER,
        SenderType.NEW_MEMBER_COMMIT,
    )
    if needs_context != (group_context is not None):
        raise ValueError("group_context is required exactly for member/new_member_commit")
    w = Writer().uint16(MLS10).uint16(wire_format)
    content.encode(w)
    if group_context is not None:
        w.raw(group_context)
    return w.getvalue()


def confirmed_transcript_hash_input(
    wire_format: WireFormat, content: FramedContent, signature: bytes
) -> bytes:
    """ConfirmedTranscriptHashInput (RFC 9420 section 8.2)."""
    w = Writer().uint16(wire_format)
    content.encode(w)
    return w.opaque(signature).getvalue()


def interim_transcript_hash_input(confirmation_tag: bytes) -> bytes:
    """InterimTranscriptHashInput: ``struct { MAC confirmation_tag; }``."""
    return Writer().opaque(confirmation_tag).getvalue()


MLSPayload = PublicMessage | PrivateMessage | Welcome | GroupInfo | KeyPackage

_PAYLOADS: dict[WireFormat, type[MLSPayload]] = {
    WireFormat.PUBLIC_MESSAGE: PublicMessage,
    WireFormat.PRIVATE_MESSAGE: PrivateMessage,
    WireFormat.WELCOME: Welcome,
    WireFormat.GROUP_INFO: GroupInfo,
    WireFormat.KEY_PACKAGE: KeyPackage,
}
_FORMATS: dict[type[MLSPayload], WireFormat] = {v: k for k, v in _PAYLOADS.items()}


@dataclass(frozen=True, slots=True)
class MLSMessage(Wire):
    """The top-level RFC 9420 message; the wire format follows from the payload's type.

    Only version mls10 and the five RFC 9420 wire formats decode (others have no known layout).
    """

    payload: MLSPayload

    @property
    def version(self) -> int:
        return MLS10

    @property
    def wire_format(self) -> WireFormat:
        return _FORMATS[type(self.payload)]

    def encode(self, w: Writer) -> None:
        w.uint16(MLS10).uint16(self.wire_format)
        self.payload.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        version = r.uint16()
        if version != MLS10:
            raise DecodeError(f"unsupported protocol version {version}")
        wf = enum_value(WireFormat, r.uint16())
        return cls(_PAYLOADS[wf].decode(r))
