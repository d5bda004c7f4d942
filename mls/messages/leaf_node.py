"""LeafNode (RFC 9420 section 7.2) and the LeafNodeTBS bytes it signs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from mls.codec import Reader, Writer
from mls.messages._util import enum_value
from mls.messages.common import (
    Capabilities,
    Credential,
    Extension,
    Lifetime,
    Wire,
    read_extensions,
    write_extensions,
)

__all__ = ["LeafNode", "LeafNodeSource"]


class LeafNodeSource(IntEnum):
    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


@dataclass(frozen=True, slots=True)
class LeafNode(Wire):
    """A member's leaf. ``lifetime`` is set iff the source is ``key_package`` and
    ``parent_hash`` iff it is ``commit``; ``update`` carries neither."""

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    lifetime: Lifetime | None = None
    parent_hash: bytes | None = None

    def __post_init__(self) -> None:
        src = self.leaf_node_source
        if (self.lifetime is not None) != (src == LeafNodeSource.KEY_PACKAGE):
            raise ValueError("lifetime must be present exactly for source key_package")
        if (self.parent_hash is not None) != (src == LeafNodeSource.COMMIT):
            raise ValueError("parent_hash must be present exactly for source commit")

    def _encode_body(self, w: Writer) -> None:
        w.opaque(self.encryption_key).opaque(self.signature_key)
        self.credential.encode(w)
        self.capabilities.encode(w)
        w.uint8(self.leaf_node_source)
        if self.lifetime is not None:
            self.lifetime.encode(w)
        elif self.parent_hash is not None:
            w.opaque(self.parent_hash)
        write_extensions(w, self.extensions)

    def encode(self, w: Writer) -> None:
        self._encode_body(w)
        w.opaque(self.signature)

    def tbs(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """LeafNodeTBS: the body, plus group id and leaf index for update/commit sources."""
        w = Writer()
        self._encode_body(w)
        if self.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
            if group_id is None or leaf_index is None:
                raise ValueError("update/commit leaf nodes sign group_id and leaf_index")
            w.opaque(group_id).uint32(leaf_index)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Self:
        encryption_key = r.opaque()
        signature_key = r.opaque()
        credential = Credential.decode(r)
        capabilities = Capabilities.decode(r)
        source = enum_value(LeafNodeSource, r.uint8())
        lifetime = Lifetime.decode(r) if source == LeafNodeSource.KEY_PACKAGE else None
        parent_hash = r.opaque() if source == LeafNodeSource.COMMIT else None
        extensions = read_extensions(r)
        signature = r.opaque()
        return cls(
            encryption_key,
            signature_key,
            credential,
            capabilities,
            source,
            extensions,
            signature,
            lifetime,
            parent_hash,
        )
