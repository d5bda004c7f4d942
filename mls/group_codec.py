"""The storage encoding of a ``Group``: its state, settings and pending commit.

Not a wire format: it holds private keys and goes to protected storage only. ``"MLSP" ||
uint16 version || fields`` in RFC 9420's TLS presentation syntax, decoded strictly (bounded
lengths, no trailing bytes, one error type: DecodeError).
"""

from __future__ import annotations

from dataclasses import dataclass

from mls.codec import Reader, Writer, decode_exact
from mls.commit import CreatedCommit
from mls.errors import DecodeError, MlsError
from mls.events import CommitOutput
from mls.messages import KeyPackage, LeafNode, WireFormat
from mls.state import GroupState, decode_state, encode_state

__all__ = ["PendingCommit", "StoredGroup", "decode_group", "encode_group"]

_MAGIC = b"MLSP"
_VERSION = 1


@dataclass(frozen=True)
class PendingCommit:
    """Our commit awaiting ``merge_pending_commit()``."""

    created: CreatedCommit
    output: CommitOutput


@dataclass(frozen=True)
class StoredGroup:
    state: GroupState
    handshake_format: WireFormat
    ratchet_tree_extension: bool
    padding: int
    pending: PendingCommit | None


def _write_pending(w: Writer, p: PendingCommit) -> None:
    c = p.created
    w.opaque(encode_state(c.state)).opaque(c.message)
    w.optional(c.welcome, Writer.opaque)
    w.opaque(c.group_info)
    w.vector(list(c.added), lambda w2, a: w2.uint32(a[0]).opaque(a[1].to_bytes()))
    w.vector(list(c.removed), lambda w2, r: w2.uint32(r[0]).opaque(r[1].to_bytes()))


def _read_pending(r: Reader) -> PendingCommit:
    new_state = decode_state(r.opaque())
    message = r.opaque()
    welcome = r.optional(Reader.opaque)
    gi = r.opaque()
    added = r.vector(lambda r2: (r2.uint32(), KeyPackage.from_bytes(r2.opaque())))
    removed = r.vector(lambda r2: (r2.uint32(), LeafNode.from_bytes(r2.opaque())))
    created = CreatedCommit(new_state, message, welcome, gi, tuple(added), tuple(removed))
    return PendingCommit(created, CommitOutput(message, welcome, gi))


def encode_group(g: StoredGroup) -> bytes:
    w = Writer().raw(_MAGIC).uint16(_VERSION)
    w.uint16(g.handshake_format).uint8(1 if g.ratchet_tree_extension else 0)
    w.uint32(g.padding).opaque(encode_state(g.state))
    w.optional(g.pending, _write_pending)
    return w.getvalue()


def _read(r: Reader) -> StoredGroup:
    if r.raw(4) != _MAGIC:
        raise DecodeError("not a stored MLS group")
    if r.uint16() != _VERSION:
        raise DecodeError("unsupported stored group version")
    fmt = r.uint16()
    if fmt not in (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE):
        raise DecodeError("bad handshake format")
    rt_ext = r.uint8()
    if rt_ext > 1:
        raise DecodeError("bad flag")
    padding = r.uint32()
    state = decode_state(r.opaque())
    pending = r.optional(_read_pending)
    return StoredGroup(state, WireFormat(fmt), bool(rt_ext), padding, pending)


def decode_group(data: bytes) -> StoredGroup:
    try:
        return decode_exact(data, _read)
    except DecodeError:
        raise
    except (ValueError, MlsError) as exc:
        raise DecodeError(f"bad stored group: {exc}") from None
