"""The ratchet tree (RFC 9420 sections 4, 7.7, 7.8): a node array with cached hashes and
resolutions.

Nodes live in one array (leaves at even, parents at odd indices) padded to a power-of-two leaf
count. Every mutation goes through ``_set`` which drops the cached tree hash and resolution of
the node and its ancestors, so a commit only rehashes the paths it touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from mls.codec import Writer, decode_exact, encode_varint
from mls.crypto.suite import CipherSuite
from mls.errors import DecodeError, ValidationError
from mls.messages.leaf_node import LeafNode
from mls.messages.tree import (
    Node,
    ParentNode,
    leaf_tree_hash_input,
    parent_hash_input,
    parent_tree_hash_input,
    write_node,
)
from mls.messages.tree import (
    RatchetTree as WireTree,
)

__all__ = ["RatchetTree", "TreeError"]

MAX_LEAVES = 1 << 20  # bound on a tree decoded from untrusted bytes


class TreeError(ValidationError):
    """A tree operation or index is invalid for this tree."""


def _level(x: int) -> int:
    return (x ^ (x + 1)).bit_length() - 1


def _parent(x: int) -> int:
    # Valid for any non-root node of a full tree; the caller stops at the root.
    k = _level(x)
    return (x | (1 << k)) & ~(1 << (k + 1))


class RatchetTree:
    """A mutable ratchet tree for one cipher suite.

    ``copy()`` is cheap (array copies, caches shared by value) so a provisional tree can be
    built while processing a commit and thrown away on failure.
    """

    __slots__ = ("_enc", "_hash", "_nodes", "_res", "suite")

    def __init__(self, suite: CipherSuite, nodes: list[Node | None] | None = None) -> None:
        self.suite = suite
        if nodes is None:
            nodes = [None]
        n = len(nodes)
        leaves = (n + 1) // 2
        if n == 0 or n % 2 == 0 or leaves & (leaves - 1):
            raise TreeError("node array must hold a power-of-two number of leaves")
        for i, node in enumerate(nodes):
            if node is not None and isinstance(node, LeafNode) == bool(i & 1):
                raise TreeError(f"node {i} has the wrong type for its position")
        self._nodes: list[Node | None] = nodes
        self._hash: list[bytes | None] = [None] * n
        self._res: list[tuple[int, ...] | None] = [None] * n
        # Per index: (node object, its optional<Node> encoding); valid while ``is`` matches.
        self._enc: list[tuple[Node, bytes] | None] = [None] * n

    # -- construction / export ------------------------------------------------------------
    @classmethod
    def from_wire(cls, suite: CipherSuite, tree: WireTree) -> RatchetTree:
        if (len(tree.nodes) + 1) // 2 > MAX_LEAVES:
            raise TreeError("tree too large")
        return cls(suite, tree.padded())

    @classmethod
    def from_bytes(cls, suite: CipherSuite, data: bytes) -> RatchetTree:
        """Decode the RFC 9420 ``ratchet_tree`` encoding (shape checks only; see validation)."""
        wire = decode_exact(data, WireTree.decode)
        try:
            return cls.from_wire(suite, wire)
        except TreeError as exc:
            raise DecodeError(str(exc)) from None

    def to_wire(self) -> WireTree:
        nodes = self._nodes
        end = len(nodes)
        while end and nodes[end - 1] is None:
            end -= 1
        if end == 0 or not end & 1:
            # Empty, or a parent right of the last member: not expressible on the wire.
            raise TreeError("tree has no RFC 9420 encoding")
        return WireTree(tuple(nodes[:end]))

    def to_bytes(self) -> bytes:
        """RFC 9420 encoding with trailing blank nodes stripped (the same bytes as
        ``to_wire().to_bytes()``).

        Every commit that adds members re-sends the whole tree, so each node's encoding is
        kept with the node object it was made from and reused while that object is still
        in place: nodes are immutable, and any change installs a new object."""
        nodes = self._nodes
        end = len(nodes)
        while end and nodes[end - 1] is None:
            end -= 1
        if end == 0 or not end & 1:
            raise TreeError("tree has no RFC 9420 encoding")
        enc = self._enc
        if len(enc) < end:
            enc.extend([None] * (end - len(enc)))
        parts: list[bytes] = []
        for x in range(end):
            node = nodes[x]
            if node is None:
                parts.append(b"\x00")
                continue
            cached = enc[x]
            if cached is not None and cached[0] is node:
                parts.append(cached[1])
                continue
            w = Writer().uint8(1)
            write_node(w, node)
            data = w.getvalue()
            enc[x] = (node, data)
            parts.append(data)
        body = b"".join(parts)
        return encode_varint(len(body)) + body

    def copy(self) -> RatchetTree:
        new = RatchetTree.__new__(RatchetTree)
        new.suite = self.suite
        new._nodes = list(self._nodes)
        new._hash = list(self._hash)
        new._res = list(self._res)
        new._enc = list(self._enc)
        return new

    def __repr__(self) -> str:
        return f"RatchetTree(leaves={self.n_leaves}, members={self.member_count()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RatchetTree):
            return NotImplemented
        return self.suite is other.suite and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]

    # -- accessors ------------------------------------------------------------------------
    @property
    def n_leaves(self) -> int:
        return (len(self._nodes) + 1) // 2

    @property
    def n_nodes(self) -> int:
        return len(self._nodes)

    @property
    def root(self) -> int:
        return self.n_leaves - 1

    def node(self, x: int) -> Node | None:
        self._check_node(x)
        return self._nodes[x]

    def leaf(self, leaf_index: int) -> LeafNode | None:
        self._check_leaf(leaf_index)
        node = self._nodes[2 * leaf_index]
        assert node is None or isinstance(node, LeafNode)
        return node

    def parent_node(self, x: int) -> ParentNode | None:
        self._check_node(x)
        node = self._nodes[x]
        if x & 1 == 0:
            raise TreeError(f"node {x} is a leaf")
        assert node is None or isinstance(node, ParentNode)
        return node

    def leaves(self) -> Iterator[tuple[int, LeafNode]]:
        """Non-blank leaves as (leaf index, leaf node), left to right."""
        nodes = self._nodes
        for x in range(0, len(nodes), 2):
            node = nodes[x]
            if node is not None:
                assert isinstance(node, LeafNode)
                yield x >> 1, node

    def has_leaf_key(self, signature_keys: set[bytes], encryption_keys: set[bytes]) -> bool:
        """True when some non-blank leaf uses one of the signature or encryption keys."""
        for node in self._nodes[::2]:
            if node is not None and (
                node.signature_key in signature_keys  # type: ignore[union-attr]
                or node.encryption_key in encryption_keys
            ):
                return True
        return False

    def member_count(self) -> int:
        return sum(1 for x in range(0, len(self._nodes), 2) if self._nodes[x] is not None)

    def nodes(self) -> tuple[Node | None, ...]:
        return tuple(self._nodes)

    def _check_node(self, x: int) -> None:
        if not 0 <= x < len(self._nodes):
            raise TreeError(f"node index {x} outside the tree")

    def _check_leaf(self, leaf_index: int) -> None:
        if not 0 <= leaf_index < self.n_leaves:
            raise TreeError(f"leaf index {leaf_index} outside the tree")

    # -- index arithmetic bound to this tree's size ---------------------------------------
    def direct_path(self, x: int) -> list[int]:
        self._check_node(x)
        r = self.root
        out = []
        while x != r:
            x = _parent(x)
            out.append(x)
        return out

    def copath(self, x: int) -> list[int]:
        self._check_node(x)
        r = self.root
        out = []
        while x != r:
            out.append(x ^ (1 << (_level(x) + 1)))
            x = _parent(x)
        return out

    def filtered_direct_path(self, leaf_index: int) -> list[tuple[int, int]]:
        """(direct-path node, copath child) pairs whose copath child has a non-empty
        resolution, bottom-up (RFC 9420 section 4.1.2)."""
        self._check_leaf(leaf_index)
        x = 2 * leaf_index
        r = self.root
        out = []
        while x != r:
            sib = x ^ (1 << (_level(x) + 1))
            x = _parent(x)
            if self.resolution(sib):
                out.append((x, sib))
        return out

    @staticmethod
    def leaf_span(x: int) -> tuple[int, int]:
        """Leaf indices [start, end) under node ``x``."""
        k = _level(x)
        start = (x >> (k + 1)) << k
        return start, start + (1 << k)

    def is_ancestor(self, ancestor: int, x: int) -> bool:
        """True when ``x`` lies in the subtree of ``ancestor`` (a node is its own ancestor)."""
        k = _level(ancestor)
        return (x >> (k + 1)) == (ancestor >> (k + 1))

    # -- resolution -----------------------------------------------------------------------
    def resolution(self, x: int) -> tuple[int, ...]:
        """Node indices of the resolution of ``x`` (RFC 9420 section 4.1.1), cached."""
        self._check_node(x)
        return self._resolution(x)

    def _resolution(self, x: int) -> tuple[int, ...]:
        cached = self._res[x]
        if cached is not None:
            return cached
        node = self._nodes[x]
        res: tuple[int, ...]
        if node is None:
            if x & 1 == 0:
                res = ()
            else:
                k = _level(x)
                res = self._resolution(x ^ (1 << (k - 1))) + self._resolution(x ^ (3 << (k - 1)))
        elif isinstance(node, ParentNode):
            res = (x, *(2 * u for u in node.unmerged_leaves))
        else:
            res = (x,)
        self._res[x] = res
        return res

    # -- mutation -------------------------------------------------------------------------
    def _set(self, x: int, node: Node | None) -> None:
        self._nodes[x] = node
        self._invalidate(x)

    def _invalidate(self, x: int) -> None:
        h, res = self._hash, self._res
        r = self.root
        h[x] = None
        res[x] = None
        while x != r:
            x = _parent(x)
            h[x] = None
            res[x] = None

    def set_leaf(self, leaf_index: int, leaf: LeafNode | None) -> None:
        self._check_leaf(leaf_index)
        self._set(2 * leaf_index, leaf)

    def set_parent(self, x: int, node: ParentNode | None) -> None:
        self._check_node(x)
        if x & 1 == 0:
            raise TreeError(f"node {x} is a leaf")
        self._set(x, node)

    def blank_path(self, leaf_index: int) -> None:
        """Blank every parent on the leaf's direct path."""
        self._check_leaf(leaf_index)
        nodes = self._nodes
        for p in self.direct_path(2 * leaf_index):
            nodes[p] = None
        self._invalidate(2 * leaf_index)

    def _extend(self) -> None:
        """Double the leaf count; existing indices (and their caches) keep their meaning."""
        n = len(self._nodes) + 1
        self._nodes.extend([None] * n)
        self._hash.extend([None] * n)
        self._res.extend([None] * n)
        # The old root gained a parent; only the new root's caches are missing (all None).

    def add_leaf(self, leaf: LeafNode) -> int:
        """Place ``leaf`` in the leftmost blank leaf (extending if full) and record it as
        unmerged on every non-blank ancestor. Returns its leaf index."""
        nodes = self._nodes
        x = 0
        n = len(nodes)
        while x < n and nodes[x] is not None:
            x += 2
        if x >= n:
            self._extend()
            nodes = self._nodes
        leaf_index = x >> 1
        nodes[x] = leaf
        for p in self.direct_path(x):
            pn = nodes[p]
            if pn is not None:
                assert isinstance(pn, ParentNode)
                nodes[p] = replace(pn, unmerged_leaves=(*pn.unmerged_leaves, leaf_index))
        self._invalidate(x)
        return leaf_index

    def update_leaf(self, leaf_index: int, leaf: LeafNode) -> None:
        """Apply an Update: replace the leaf and blank its direct path."""
        if self.leaf(leaf_index) is None:
            raise TreeError(f"leaf {leaf_index} is blank")
        self._nodes[2 * leaf_index] = leaf
        self.blank_path(leaf_index)

    def remove_leaf(self, leaf_index: int) -> None:
        """Apply a Remove: blank the leaf and its direct path, then truncate."""
        if self.leaf(leaf_index) is None:
            raise TreeError(f"leaf {leaf_index} is blank")
        self._nodes[2 * leaf_index] = None
        self.blank_path(leaf_index)
        self.truncate()

    def truncate(self) -> None:
        """Halve the tree while its right half holds no non-blank leaf (RFC 9420 7.7)."""
        nodes = self._nodes
        while len(nodes) > 1:
            half = (len(nodes) + 1) // 2  # first index of the right half is `half`
            if any(nodes[x] is not None for x in range(half, len(nodes), 2)):
                break
            keep = half - 1
            del nodes[keep:]
            del self._hash[keep:]
            del self._res[keep:]
        # Nodes kept are unaffected: a subtree's hash never depends on nodes outside it.

    # -- hashes ---------------------------------------------------------------------------
    def tree_hash(self) -> bytes:
        return self._node_hash(self.root)

    def node_hash(self, x: int) -> bytes:
        """Tree hash of the subtree rooted at ``x`` (RFC 9420 section 7.8), cached."""
        self._check_node(x)
        return self._node_hash(x)

    def _node_hash(self, x: int) -> bytes:
        cached = self._hash[x]
        if cached is not None:
            return cached
        node = self._nodes[x]
        if x & 1 == 0:
            assert node is None or isinstance(node, LeafNode)
            digest = self.suite.hash(leaf_tree_hash_input(x >> 1, node))
        else:
            assert node is None or isinstance(node, ParentNode)
            k = _level(x)
            left = self._node_hash(x ^ (1 << (k - 1)))
            right = self._node_hash(x ^ (3 << (k - 1)))
            digest = self.suite.hash(parent_tree_hash_input(node, left, right))
        self._hash[x] = digest
        return digest

    def node_hash_excluding(self, x: int, leaves: frozenset[int]) -> bytes:
        """Tree hash of ``x`` as if the given leaves were blank and absent from every
        unmerged_leaves list: the "original sibling tree hash" of RFC 9420 section 7.9."""
        self._check_node(x)
        start, end = self.leaf_span(x)
        if not any(start <= u < end for u in leaves):
            return self._node_hash(x)
        node = self._nodes[x]
        if x & 1 == 0:
            return self.suite.hash(leaf_tree_hash_input(x >> 1, None))
        assert node is None or isinstance(node, ParentNode)
        if node is not None and any(u in leaves for u in node.unmerged_leaves):
            kept = tuple(u for u in node.unmerged_leaves if u not in leaves)
            node = replace(node, unmerged_leaves=kept)
        k = _level(x)
        left = self.node_hash_excluding(x ^ (1 << (k - 1)), leaves)
        right = self.node_hash_excluding(x ^ (3 << (k - 1)), leaves)
        return self.suite.hash(parent_tree_hash_input(node, left, right))

    def parent_hash(self, p: int, sibling: int) -> bytes:
        """ParentHash of parent ``p`` as seen from its child opposite ``sibling``."""
        node = self._nodes[p]
        if not isinstance(node, ParentNode):
            raise TreeError(f"node {p} is not a non-blank parent")
        sib_hash = self.node_hash_excluding(sibling, frozenset(node.unmerged_leaves))
        return self.suite.hash(parent_hash_input(node.encryption_key, node.parent_hash, sib_hash))
