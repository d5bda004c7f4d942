"""Typed bodies of the RFC 9420 extensions (section 13.4 and friends).

``Extension`` keeps ``extension_data`` as bytes; these structs parse and build it:
``RatchetTree.from_bytes(ext.extension_data)`` for ``ratchet_tree``, and the classes below for
the others. ``to_extension()`` wraps a body into an ``Extension``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from mls.codec import Reader, Writer
from mls.messages._util import read_u16_list, write_item, write_u16_list
from mls.messages.common import Credential, Extension, ExtensionType, Wire

__all__ = [
    "ApplicationId",
    "ExternalPub",
    "ExternalSender",
    "ExternalSenders",
    "RequiredCapabilities",
    "find_extension",
]


def find_extension(extensions: tuple[Extension, ...], extension_type: int) -> Extension | None:
    for ext in extensions:
        if ext.extension_type == extension_type:
            return ext
    return None


@dataclass(frozen=True, slots=True)
class ApplicationId(Wire):
    application_id: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.application_id)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque())

    def to_extension(self) -> Extension:
        return Extension(ExtensionType.APPLICATION_ID, self.to_bytes())


@dataclass(frozen=True, slots=True)
class RequiredCapabilities(Wire):
    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        write_u16_list(w, self.extension_types)
        write_u16_list(w, self.proposal_types)
        write_u16_list(w, self.credential_types)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(read_u16_list(r), read_u16_list(r), read_u16_list(r))

    def to_extension(self) -> Extension:
        return Extension(ExtensionType.REQUIRED_CAPABILITIES, self.to_bytes())


@dataclass(frozen=True, slots=True)
class ExternalPub(Wire):
    external_pub: bytes  # HPKEPublicKey

    def encode(self, w: Writer) -> None:
        w.opaque(self.external_pub)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque())

    def to_extension(self) -> Extension:
        return Extension(ExtensionType.EXTERNAL_PUB, self.to_bytes())


@dataclass(frozen=True, slots=True)
class ExternalSender(Wire):
    signature_key: bytes
    credential: Credential

    def encode(self, w: Writer) -> None:
        w.opaque(self.signature_key)
        self.credential.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), Credential.decode(r))


@dataclass(frozen=True, slots=True)
class ExternalSenders(Wire):
    """``ExternalSender external_senders<V>``; a Sender of type external indexes this list."""

    senders: tuple[ExternalSender, ...]

    def encode(self, w: Writer) -> None:
        w.vector(self.senders, write_item)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(tuple(r.vector(ExternalSender.decode)))

    def to_extension(self) -> Extension:
        return Extension(ExtensionType.EXTERNAL_SENDERS, self.to_bytes())
