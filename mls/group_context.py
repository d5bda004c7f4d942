"""GroupContext (RFC 9420 section 8.1): the per-epoch summary every key derivation binds to.

Extensions are kept as raw ``(extension_type, extension_data)`` pairs here; the typed
``Extension`` lives with the wire structs and can be converted losslessly.
"""

from __future__ import annotations

from dataclasses import dataclass

from mls.codec import Reader, Writer, decode_exact
from mls.errors import DecodeError

__all__ = [
    "MAX_EXTENSION_DATA",
    "MAX_GROUP_ID",
    "MAX_HASH",
    "PROTOCOL_MLS10",
    "GroupContext",
    "RawExtension",
]

PROTOCOL_MLS10 = 1
# Bounds on untrusted input: far above anything legitimate, far below a memory problem.
MAX_GROUP_ID = 1 << 16
MAX_HASH = 64
MAX_EXTENSION_DATA = 1 << 20
MAX_EXTENSIONS_BYTES = 1 << 22

RawExtension = tuple[int, bytes]


def _write_ext(w: Writer, ext: RawExtension) -> None:
    w.uint16(ext[0]).opaque(ext[1])


def _read_ext(r: Reader) -> RawExtension:
    return r.uint16(), r.opaque(MAX_EXTENSION_DATA)


@dataclass(frozen=True)
class GroupContext:
    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[RawExtension, ...] = ()
    version: int = PROTOCOL_MLS10

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    def write(self, w: Writer) -> None:
        w.uint16(self.version).uint16(self.cipher_suite).opaque(self.group_id)
        w.uint64(self.epoch).opaque(self.tree_hash).opaque(self.confirmed_transcript_hash)
        w.vector(self.extensions, _write_ext)

    @classmethod
    def read(cls, r: Reader) -> GroupContext:
        version = r.uint16()
        if version != PROTOCOL_MLS10:
            raise DecodeError(f"unsupported protocol version {version}")
        cipher_suite = r.uint16()
        group_id = r.opaque(MAX_GROUP_ID)
        epoch = r.uint64()
        tree_hash = r.opaque(MAX_HASH)
        confirmed = r.opaque(MAX_HASH)
        extensions = tuple(r.vector(_read_ext, MAX_EXTENSIONS_BYTES))
        types = [t for t, _ in extensions]
        if len(set(types)) != len(types):
            raise DecodeError("duplicate extension type in GroupContext")
        return cls(cipher_suite, group_id, epoch, tree_hash, confirmed, extensions, version)

    @classmethod
    def decode(cls, data: bytes) -> GroupContext:
        return decode_exact(data, cls.read)

    # Aliases matching the ``mls.messages`` convention (to_bytes/from_bytes are bytes-level).
    def to_bytes(self) -> bytes:
        return self.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupContext:
        return cls.decode(data)

    def next_epoch(
        self,
        *,
        tree_hash: bytes,
        confirmed_transcript_hash: bytes,
        extensions: tuple[RawExtension, ...] | None = None,
    ) -> GroupContext:
        """The context of epoch + 1 (extensions unchanged unless given)."""
        return GroupContext(
            self.cipher_suite,
            self.group_id,
            self.epoch + 1,
            tree_hash,
            confirmed_transcript_hash,
            self.extensions if extensions is None else extensions,
            self.version,
        )
