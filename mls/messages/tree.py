"""Ratchet tree wire format (RFC 9420 sections 7.8 and 12.4.3.3) and tree/parent hash inputs.

A tree is ``optional<Node> ratchet_tree<V>`` in array order; ``None`` is a blank node. A leaf
node is a ``LeafNode`` and a parent node a ``ParentNode`` (the ``Node`` alias), so tree code
can use ``isinstance`` without another wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from mls.codec import Reader, Writer
from mls.errors import DecodeError
from mls.messages._util import enum_value, read_u32_list, write_item, write_u32_list
from mls.messages.common import Wire
from mls.messages.leaf_node import LeafNode

__all__ = [
    "Node",
    "NodeType",
    "ParentNode",
    "RatchetTree",
    "leaf_tree_hash_input",
    "parent_hash_input",
    "parent_tree_hash_input",
    "read_node",
    "write_node",
]


class NodeType(IntEnum):
    LEAF = 1
    PARENT = 2


@dataclass(frozen=True, slots=True)
class ParentNode(Wire):
    encryption_key: bytes
    parent_hash: bytes = b""
    unmerged_leaves: tuple[int, ...] = ()  # leaf indices

    def encode(self, w: Writer) -> None:
        w.opaque(self.encryption_key).opaque(self.parent_hash)
        write_u32_list(w, self.unmerged_leaves)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.opaque(), read_u32_list(r))


Node = LeafNode | ParentNode


def write_node(w: Writer, node: Node) -> None:
    """``Node``: node_type then the leaf or parent body."""
    if isinstance(node, LeafNode):
        w.uint8(NodeType.LEAF)
    else:
        w.uint8(NodeType.PARENT)
    node.encode(w)


def read_node(r: Reader) -> Node:
    if enum_value(NodeType, r.uint8()) == NodeType.LEAF:
        return LeafNode.decode(r)
    return ParentNode.decode(r)


def _write_opt_node(w: Writer, node: Node | None) -> None:
    if node is None:
        w.uint8(0)
    else:
        w.uint8(1)
        write_node(w, node)


def _read_opt_node(r: Reader) -> Node | None:
    return r.optional(read_node)


@dataclass(frozen=True, slots=True)
class RatchetTree(Wire):
    """The serialized tree: trailing blanks stripped, so the last node is a non-blank leaf.

    Decoding enforces what the encoding alone can show (RFC 9420 section 12.4.3.3): at least
    one node, odd length, last node non-blank, leaves at even and parents at odd indices.
    Use ``padded()`` for the full ``2^(d+1) - 1`` array.
    """

    nodes: tuple[Node | None, ...]

    def __post_init__(self) -> None:
        _check_shape(self.nodes, ValueError)

    @property
    def n_leaves(self) -> int:
        """Leaf count of the padded tree (a power of two)."""
        leaves = (len(self.nodes) + 1) // 2
        return 1 << (leaves - 1).bit_length()

    def padded(self) -> list[Node | None]:
        out: list[Node | None] = list(self.nodes)
        out.extend([None] * (2 * self.n_leaves - 1 - len(out)))
        return out

    @classmethod
    def from_nodes(cls, nodes: list[Node | None] | tuple[Node | None, ...]) -> Self:
        """Build from a full array, dropping trailing blanks."""
        end = len(nodes)
        while end and nodes[end - 1] is None:
            end -= 1
        return cls(tuple(nodes[:end]))

    def encode(self, w: Writer) -> None:
        w.vector(self.nodes, _write_opt_node)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        nodes = tuple(r.vector(_read_opt_node))
        _check_shape(nodes, DecodeError)
        return cls(nodes)


def _check_shape(nodes: tuple[Node | None, ...], err: type[ValueError]) -> None:
    if not nodes or len(nodes) % 2 == 0 or nodes[-1] is None:
        raise err("ratchet tree must have odd length and end in a non-blank leaf")
    for i, node in enumerate(nodes):
        if node is not None and isinstance(node, LeafNode) == bool(i & 1):
            raise err(f"node {i} has the wrong type for its position")


def leaf_tree_hash_input(leaf_index: int, leaf: LeafNode | None) -> bytes:
    """TreeHashInput for a leaf: node_type leaf, then LeafNodeHashInput."""
    w = Writer().uint8(NodeType.LEAF).uint32(leaf_index)
    w.optional(leaf, write_item)
    return w.getvalue()


def parent_tree_hash_input(parent: ParentNode | None, left_hash: bytes, right_hash: bytes) -> bytes:
    """TreeHashInput for a parent: node_type parent, then ParentNodeHashInput."""
    w = Writer().uint8(NodeType.PARENT)
    w.optional(parent, write_item)
    return w.opaque(left_hash).opaque(right_hash).getvalue()


def parent_hash_input(
    encryption_key: bytes, parent_hash: bytes, original_sibling_tree_hash: bytes
) -> bytes:
    """ParentHashInput (RFC 9420 section 7.9)."""
    w = Writer().opaque(encryption_key).opaque(parent_hash)
    return w.opaque(original_sibling_tree_hash).getvalue()
