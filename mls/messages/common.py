"""Shared RFC 9420 wire types: enums, Extension, Credential, Capabilities, Lifetime, HPKECiphertext.

Registries the RFC makes extensible through IANA (cipher suites, extension, proposal and
credential types) are carried as plain ``int`` so unknown and GREASE values round-trip; the
``IntEnum`` classes below only name the values RFC 9420 defines. Closed enums (content type,
sender type, ...) are decoded strictly by the modules that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from mls.codec import Reader, Writer, decode_exact
from mls.errors import DecodeError
from mls.messages._util import (
    read_opaque_list,
    read_u16_list,
    write_item,
    write_opaque_list,
    write_u16_list,
)

__all__ = [
    "MLS10",
    "Capabilities",
    "CipherSuite",
    "ContentType",
    "Credential",
    "CredentialType",
    "Extension",
    "ExtensionType",
    "HPKECiphertext",
    "Lifetime",
    "ProposalType",
    "ProtocolVersion",
    "SenderType",
    "Wire",
    "WireFormat",
    "read_extensions",
    "write_extensions",
]


class ProtocolVersion(IntEnum):
    MLS10 = 1


MLS10 = ProtocolVersion.MLS10


class CipherSuite(IntEnum):
    """Named suites; the wire field stays an ``int`` (suites are an open registry)."""

    MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 = 1
    MLS_128_DHKEMP256_AES128GCM_SHA256_P256 = 2
    MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = 3
    MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448 = 4
    MLS_256_DHKEMP521_AES256GCM_SHA512_P521 = 5
    MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448 = 6
    MLS_256_DHKEMP384_AES256GCM_SHA384_P384 = 7


class ContentType(IntEnum):
    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(IntEnum):
    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


class WireFormat(IntEnum):
    PUBLIC_MESSAGE = 1
    PRIVATE_MESSAGE = 2
    WELCOME = 3
    GROUP_INFO = 4
    KEY_PACKAGE = 5


class ExtensionType(IntEnum):
    APPLICATION_ID = 1
    RATCHET_TREE = 2
    REQUIRED_CAPABILITIES = 3
    EXTERNAL_PUB = 4
    EXTERNAL_SENDERS = 5


class ProposalType(IntEnum):
    ADD = 1
    UPDATE = 2
    REMOVE = 3
    PSK = 4
    REINIT = 5
    EXTERNAL_INIT = 6
    GROUP_CONTEXT_EXTENSIONS = 7


class CredentialType(IntEnum):
    BASIC = 1
    X509 = 2


class Wire:
    """Mixin: ``to_bytes``/``from_bytes`` around ``encode``/``decode``."""

    __slots__ = ()

    def encode(self, w: Writer) -> None:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Self:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return decode_exact(data, cls.decode)


@dataclass(frozen=True, slots=True)
class Extension(Wire):
    """``struct { ExtensionType extension_type; opaque extension_data<V>; }``; data kept raw."""

    extension_type: int
    extension_data: bytes

    def encode(self, w: Writer) -> None:
        w.uint16(self.extension_type).opaque(self.extension_data)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.uint16(), r.opaque())


def read_extensions(r: Reader) -> tuple[Extension, ...]:
    """An extension list; RFC 9420 allows each extension type at most once per list."""
    exts = tuple(r.vector(Extension.decode))
    if len(exts) > 1 and len({e.extension_type for e in exts}) != len(exts):
        raise DecodeError("duplicate extension type")
    return exts


def write_extensions(w: Writer, exts: tuple[Extension, ...]) -> None:
    w.vector(exts, write_item)


@dataclass(frozen=True, slots=True)
class Credential(Wire):
    """RFC 9420 section 5.3.

    ``basic`` fills ``identity``; ``x509`` fills ``certificates`` (leaf first). Other credential
    types have no RFC-defined body; like other implementations we carry them as ``opaque<V>``
    in ``data`` so they round-trip.
    """

    credential_type: int
    identity: bytes = b""
    certificates: tuple[bytes, ...] = ()
    data: bytes = b""

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        return cls(CredentialType.BASIC, identity=identity)

    @classmethod
    def x509(cls, certificates: tuple[bytes, ...]) -> Credential:
        return cls(CredentialType.X509, certificates=tuple(certificates))

    def encode(self, w: Writer) -> None:
        w.uint16(self.credential_type)
        if self.credential_type == CredentialType.BASIC:
            w.opaque(self.identity)
        elif self.credential_type == CredentialType.X509:
            write_opaque_list(w, self.certificates)
        else:
            w.opaque(self.data)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        ct = r.uint16()
        if ct == CredentialType.BASIC:
            return cls(CredentialType.BASIC, identity=r.opaque())
        if ct == CredentialType.X509:
            return cls(CredentialType.X509, certificates=read_opaque_list(r))
        return cls(ct, data=r.opaque())


@dataclass(frozen=True, slots=True)
class Capabilities(Wire):
    """Lists of code points; GREASE and unknown values are kept as they are."""

    versions: tuple[int, ...] = (MLS10,)
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    def encode(self, w: Writer) -> None:
        write_u16_list(w, self.versions)
        write_u16_list(w, self.cipher_suites)
        write_u16_list(w, self.extensions)
        write_u16_list(w, self.proposals)
        write_u16_list(w, self.credentials)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(
            read_u16_list(r),
            read_u16_list(r),
            read_u16_list(r),
            read_u16_list(r),
            read_u16_list(r),
        )


@dataclass(frozen=True, slots=True)
class Lifetime(Wire):
    not_before: int
    not_after: int

    def encode(self, w: Writer) -> None:
        w.uint64(self.not_before).uint64(self.not_after)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.uint64(), r.uint64())


@dataclass(frozen=True, slots=True)
class HPKECiphertext(Wire):
    kem_output: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.kem_output).opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.opaque())
