"""Proposals (RFC 9420 section 12.1) and ProposalOrRef.

``Proposal`` wraps one body class; each body knows its ``proposal_type``. Proposal types are an
open registry, and other implementations carry a type they do not know as ``opaque<V>``; we
do the same with ``UnknownProposal`` so such proposals round-trip (the group logic decides
whether to accept them).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from mls.codec import Reader, Writer
from mls.errors import DecodeError
from mls.messages._util import enum_value
from mls.messages.common import (
    Extension,
    ProposalType,
    Wire,
    read_extensions,
    write_extensions,
)
from mls.messages.key_package import KeyPackage
from mls.messages.leaf_node import LeafNode

__all__ = [
    "Add",
    "ExternalInit",
    "GroupContextExtensions",
    "PSKType",
    "PreSharedKey",
    "PreSharedKeyID",
    "Proposal",
    "ProposalBody",
    "ProposalOrRef",
    "ProposalRef",
    "ReInit",
    "Remove",
    "ResumptionPSKUsage",
    "UnknownProposal",
    "Update",
    "read_proposal_or_ref",
    "write_proposal_or_ref",
]


class PSKType(IntEnum):
    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


@dataclass(frozen=True, slots=True)
class Add(Wire):
    proposal_type: ClassVar[int] = ProposalType.ADD
    key_package: KeyPackage

    def encode(self, w: Writer) -> None:
        self.key_package.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(KeyPackage.decode(r))


@dataclass(frozen=True, slots=True)
class Update(Wire):
    proposal_type: ClassVar[int] = ProposalType.UPDATE
    leaf_node: LeafNode

    def encode(self, w: Writer) -> None:
        self.leaf_node.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(LeafNode.decode(r))


@dataclass(frozen=True, slots=True)
class Remove(Wire):
    proposal_type: ClassVar[int] = ProposalType.REMOVE
    removed: int  # leaf index

    def encode(self, w: Writer) -> None:
        w.uint32(self.removed)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.uint32())


@dataclass(frozen=True, slots=True)
class PreSharedKeyID(Wire):
    """External PSKs set ``psk_id``; resumption PSKs set ``usage``, ``psk_group_id`` and
    ``psk_epoch``."""

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes = b""
    usage: ResumptionPSKUsage | None = None
    psk_group_id: bytes = b""
    psk_epoch: int = 0

    def __post_init__(self) -> None:
        if (self.usage is not None) != (self.psktype == PSKType.RESUMPTION):
            raise ValueError("usage must be set exactly for resumption PSKs")

    @classmethod
    def external(cls, psk_id: bytes, psk_nonce: bytes) -> PreSharedKeyID:
        return cls(PSKType.EXTERNAL, psk_nonce, psk_id=psk_id)

    @classmethod
    def resumption(
        cls, usage: ResumptionPSKUsage, group_id: bytes, epoch: int, psk_nonce: bytes
    ) -> PreSharedKeyID:
        return cls(
            PSKType.RESUMPTION, psk_nonce, usage=usage, psk_group_id=group_id, psk_epoch=epoch
        )

    def encode(self, w: Writer) -> None:
        w.uint8(self.psktype)
        if self.usage is None:
            w.opaque(self.psk_id)
        else:
            w.uint8(self.usage).opaque(self.psk_group_id).uint64(self.psk_epoch)
        w.opaque(self.psk_nonce)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        psktype = enum_value(PSKType, r.uint8())
        if psktype == PSKType.EXTERNAL:
            psk_id = r.opaque()
            return cls(psktype, r.opaque(), psk_id=psk_id)
        usage = enum_value(ResumptionPSKUsage, r.uint8())
        group_id = r.opaque()
        epoch = r.uint64()
        return cls(psktype, r.opaque(), usage=usage, psk_group_id=group_id, psk_epoch=epoch)


@dataclass(frozen=True, slots=True)
class PreSharedKey(Wire):
    proposal_type: ClassVar[int] = ProposalType.PSK
    psk: PreSharedKeyID

    def encode(self, w: Writer) -> None:
        self.psk.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(PreSharedKeyID.decode(r))


@dataclass(frozen=True, slots=True)
class ReInit(Wire):
    """``version`` may name a future protocol version, so any value is kept."""

    proposal_type: ClassVar[int] = ProposalType.REINIT
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    def encode(self, w: Writer) -> None:
        w.opaque(self.group_id).uint16(self.version).uint16(self.cipher_suite)
        write_extensions(w, self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.uint16(), r.uint16(), read_extensions(r))


@dataclass(frozen=True, slots=True)
class ExternalInit(Wire):
    proposal_type: ClassVar[int] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.kem_output)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque())


@dataclass(frozen=True, slots=True)
class GroupContextExtensions(Wire):
    proposal_type: ClassVar[int] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: tuple[Extension, ...]

    def encode(self, w: Writer) -> None:
        write_extensions(w, self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(read_extensions(r))


@dataclass(frozen=True, slots=True)
class UnknownProposal:
    """A proposal type RFC 9420 does not define; body carried as ``opaque<V>``."""

    proposal_type: int
    data: bytes

    def __post_init__(self) -> None:
        if self.proposal_type in _BODIES or self.proposal_type == 0:
            raise ValueError(f"proposal type {self.proposal_type} is not an unknown type")

    def encode(self, w: Writer) -> None:
        w.opaque(self.data)


ProposalBody = (
    Add
    | Update
    | Remove
    | PreSharedKey
    | ReInit
    | ExternalInit
    | GroupContextExtensions
    | UnknownProposal
)

_BODIES: dict[
    int, type[Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions]
] = {
    ProposalType.ADD: Add,
    ProposalType.UPDATE: Update,
    ProposalType.REMOVE: Remove,
    ProposalType.PSK: PreSharedKey,
    ProposalType.REINIT: ReInit,
    ProposalType.EXTERNAL_INIT: ExternalInit,
    ProposalType.GROUP_CONTEXT_EXTENSIONS: GroupContextExtensions,
}


@dataclass(frozen=True, slots=True)
class Proposal(Wire):
    """``struct { ProposalType proposal_type; select (...) {...}; } Proposal``."""

    body: ProposalBody

    @property
    def proposal_type(self) -> int:
        return self.body.proposal_type

    def encode(self, w: Writer) -> None:
        w.uint16(self.body.proposal_type)
        self.body.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        pt = r.uint16()
        if pt == 0:
            raise DecodeError("reserved proposal type 0")
        body_cls = _BODIES.get(pt)
        if body_cls is None:
            return cls(UnknownProposal(pt, r.opaque()))
        return cls(body_cls.decode(r))


@dataclass(frozen=True, slots=True)
class ProposalRef(Wire):
    """A proposal by reference (``ProposalRef``, a hash reference)."""

    ref: bytes

    def encode(self, w: Writer) -> None:
        w.opaque(self.ref)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque())


ProposalOrRef = Proposal | ProposalRef
_BY_VALUE = 1
_BY_REFERENCE = 2


def write_proposal_or_ref(w: Writer, item: ProposalOrRef) -> None:
    """``ProposalOrRef``: type byte 1 then a Proposal, or 2 then a ProposalRef."""
    w.uint8(_BY_VALUE if isinstance(item, Proposal) else _BY_REFERENCE)
    item.encode(w)


def read_proposal_or_ref(r: Reader) -> ProposalOrRef:
    kind = r.uint8()
    if kind == _BY_VALUE:
        return Proposal.decode(r)
    if kind == _BY_REFERENCE:
        return ProposalRef.decode(r)
    raise DecodeError(f"invalid ProposalOrRefType {kind}")
