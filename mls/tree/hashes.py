"""Parent hashes (RFC 9420 section 7.9): computing the chain along a fresh path, and checking
that every parent node of a tree chains back to a leaf.

Tree hashes themselves are cached inside ``RatchetTree`` (``tree_hash``, ``node_hash``).
"""

from __future__ import annotations

from dataclasses import replace

from mls.messages.tree import ParentNode
from mls.tree.ratchet_tree import RatchetTree, TreeError

__all__ = [
    "apply_path_parent_hashes",
    "invalid_parent_hash_nodes",
    "verify_parent_hashes",
]


def apply_path_parent_hashes(tree: RatchetTree, fdp: list[tuple[int, int]]) -> bytes:
    """Fill in ``parent_hash`` on the parents of a just-installed filtered direct path.

    ``fdp`` is the sender's ``filtered_direct_path`` (bottom-up (node, copath child) pairs),
    whose nodes already hold their new keys and no unmerged leaves. Works top-down (the root
    side has an empty parent hash) and returns the parent hash the sender's leaf must carry.
    """
    ph = b""
    for p, sib in reversed(fdp):
        node = tree.node(p)
        if not isinstance(node, ParentNode):
            raise TreeError(f"path node {p} is blank")
        if node.parent_hash != ph:
            tree.set_parent(p, replace(node, parent_hash=ph))
        ph = tree.parent_hash(p, sib)
    return ph


def _children(x: int) -> tuple[int, int]:
    k = (x ^ (x + 1)).bit_length() - 1
    return x ^ (1 << (k - 1)), x ^ (3 << (k - 1))


def _valid_for_child(tree: RatchetTree, p: int, node: ParentNode, child: int, sib: int) -> bool:
    """P is parent-hash valid with respect to ``child`` when exactly one node D of the
    child's resolution is not one of P's unmerged leaves and D.parent_hash is P's parent hash
    (computed with the original tree hash of the other child)."""
    start, end = tree.leaf_span(child)
    unmerged = {2 * u for u in node.unmerged_leaves if start <= u < end}
    rest = [d for d in tree.resolution(child) if d not in unmerged]
    if len(rest) != 1:
        return False
    d_node = tree.node(rest[0])
    d_ph = d_node.parent_hash if d_node is not None else None
    if not d_ph:
        return False
    # Every unmerged leaf of P below the child must still appear in the child's resolution.
    if len(unmerged) + 1 != len(tree.resolution(child)):
        return False
    return d_ph == tree.parent_hash(p, sib)


def invalid_parent_hash_nodes(tree: RatchetTree) -> list[int]:
    """Non-blank parents that are not parent-hash valid with respect to either child."""
    bad = []
    for p in range(1, tree.n_nodes, 2):
        node = tree.node(p)
        if node is None:
            continue
        assert isinstance(node, ParentNode)
        left, right = _children(p)
        if not (
            _valid_for_child(tree, p, node, left, right)
            or _valid_for_child(tree, p, node, right, left)
        ):
            bad.append(p)
    return bad


def verify_parent_hashes(tree: RatchetTree) -> bool:
    """True when every non-blank parent node chains back to a leaf (RFC 9420 7.9.2)."""
    return not invalid_parent_hash_nodes(tree)
