"""Commit, UpdatePath and UpdatePathNode (RFC 9420 section 12.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from mls.codec import Reader, Writer
from mls.messages._util import write_item
from mls.messages.common import HPKECiphertext, Wire
from mls.messages.leaf_node import LeafNode
from mls.messages.proposals import ProposalOrRef, read_proposal_or_ref, write_proposal_or_ref

__all__ = ["Commit", "UpdatePath", "UpdatePathNode"]


@dataclass(frozen=True, slots=True)
class UpdatePathNode(Wire):
    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...]

    def encode(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.vector(self.encrypted_path_secret, write_item)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), tuple(r.vector(HPKECiphertext.decode)))


@dataclass(frozen=True, slots=True)
class UpdatePath(Wire):
    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...]

    def encode(self, w: Writer) -> None:
        self.leaf_node.encode(w)
        w.vector(self.nodes, write_item)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(LeafNode.decode(r), tuple(r.vector(UpdatePathNode.decode)))


@dataclass(frozen=True, slots=True)
class Commit(Wire):
    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None

    def encode(self, w: Writer) -> None:
        w.vector(self.proposals, write_proposal_or_ref)
        w.optional(self.path, write_item)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(tuple(r.vector(read_proposal_or_ref)), r.optional(UpdatePath.decode))
