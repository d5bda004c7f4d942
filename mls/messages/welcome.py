"""Welcome, GroupSecrets and GroupInfo (RFC 9420 sections 12.4.3 and 12.4.3.1).

``GroupInfo.group_context`` holds the encoded GroupContext bytes: the typed GroupContext lives
in ``mls.group_context`` (group logic), so the wire layer only checks its structure here and
hands the exact bytes on (they are also what GroupInfoTBS signs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from mls.codec import Reader, Writer
from mls.errors import DecodeError
from mls.messages._util import write_item
from mls.messages.common import (
    MLS10,
    Extension,
    HPKECiphertext,
    Wire,
    read_extensions,
    write_extensions,
)
from mls.messages.proposals import PreSharedKeyID

__all__ = [
    "EncryptedGroupSecrets",
    "GroupInfo",
    "GroupSecrets",
    "PathSecret",
    "Welcome",
    "read_group_context_bytes",
]


@dataclass(frozen=True, slots=True)
class PathSecret(Wire):
    path_secret: bytes = field(default=b"", repr=False)

    def encode(self, w: Writer) -> None:
        w.opaque(self.path_secret)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class GroupSecrets(Wire):
    joiner_secret: bytes = field(repr=False)
    path_secret: PathSecret | None = None
    psks: tuple[PreSharedKeyID, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.joiner_secret)
        w.optional(self.path_secret, write_item)
        w.vector(self.psks, write_item)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            r.opaque(), r.optional(PathSecret.decode), tuple(r.vector(PreSharedKeyID.decode))
        )


@dataclass(frozen=True, slots=True)
class EncryptedGroupSecrets(Wire):
    new_member: bytes  # KeyPackageRef
    encrypted_group_secrets: HPKECiphertext

    def encode(self, w: Writer) -> None:
        w.opaque(self.new_member)
        self.encrypted_group_secrets.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), HPKECiphertext.decode(r))


@dataclass(frozen=True, slots=True)
class Welcome(Wire):
    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    def encode(self, w: Writer) -> None:
        w.uint16(self.cipher_suite)
        w.vector(self.secrets, write_item)
        w.opaque(self.encrypted_group_info)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.uint16(), tuple(r.vector(EncryptedGroupSecrets.decode)), r.opaque())


def read_group_context_bytes(r: Reader) -> bytes:
    """Read one GroupContext, check its structure (mls10 only) and return its exact bytes."""
    version = r.uint16()
    if version != MLS10:
        raise DecodeError(f"unsupported GroupContext version {version}")
    w = Writer().uint16(version).uint16(r.uint16())
    w.opaque(r.opaque()).uint64(r.uint64()).opaque(r.opaque()).opaque(r.opaque())
    write_extensions(w, read_extensions(r))
    # Strict varints make the re-encoding identical to the input bytes.
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class GroupInfo(Wire):
    group_context: bytes  # encoded GroupContext, see module docstring
    extensions: tuple[Extension, ...]
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    def _encode_body(self, w: Writer) -> None:
        w.raw(self.group_context)
        write_extensions(w, self.extensions)
        w.opaque(self.confirmation_tag).uint32(self.signer)

    def tbs(self) -> bytes:
        """GroupInfoTBS: everything but the signature."""
        w = Writer()
        self._encode_body(w)
        return w.getvalue()

    def encode(self, w: Writer) -> None:
        self._encode_body(w)
        w.opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            read_group_context_bytes(r),
            read_extensions(r),
            r.opaque(),
            r.uint32(),
            r.opaque(),
        )
