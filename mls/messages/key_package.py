"""KeyPackage (RFC 9420 section 10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from mls.codec import Reader, Writer
from mls.errors import DecodeError
from mls.messages.common import (
    MLS10,
    Extension,
    Wire,
    read_extensions,
    write_extensions,
)
from mls.messages.leaf_node import LeafNode

__all__ = ["KeyPackage"]


@dataclass(frozen=True, slots=True)
class KeyPackage(Wire):
    """Only ``mls10`` key packages decode: another version's layout is unknown to us."""

    cipher_suite: int
    init_key: bytes
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    version: int = MLS10

    def _encode_body(self, w: Writer) -> None:
        w.uint16(self.version).uint16(self.cipher_suite).opaque(self.init_key)
        self.leaf_node.encode(w)
        write_extensions(w, self.extensions)

    def tbs(self) -> bytes:
        """KeyPackageTBS: everything but the signature."""
        w = Writer()
        self._encode_body(w)
        return w.getvalue()

    def encode(self, w: Writer) -> None:
        self._encode_body(w)
        w.opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        version = r.uint16()
        if version != MLS10:
            raise DecodeError(f"unsupported KeyPackage version {version}")
        cipher_suite = r.uint16()
        init_key = r.opaque()
        leaf_node = LeafNode.decode(r)
        extensions = read_extensions(r)
        signature = r.opaque()
        return cls(cipher_suite, init_key, leaf_node, extensions, signature, MLS10)
