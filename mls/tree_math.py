"""Array-tree index arithmetic (RFC 9420 section 4.1 and appendix C).

Nodes of a tree with ``n_leaves`` leaves sit in one array: leaves at even indices, parents at
odd ones, and a node's level is its number of trailing one bits. RFC 9420 trees always have a
power-of-two number of leaves (the tree is padded with blanks on the right), so every function
here requires that and a node index inside the tree; a violation raises ``ValueError`` because
it is a caller bug (remote indices must be checked against the tree before use).
"""

from __future__ import annotations

__all__ = [
    "common_ancestor",
    "copath",
    "direct_path",
    "is_leaf",
    "leaf_to_node",
    "left",
    "level",
    "log2",
    "node_to_leaf",
    "node_width",
    "parent",
    "right",
    "root",
    "sibling",
]


def log2(x: int) -> int:
    """Floor of log2(x); 0 for x == 0 as in the RFC's helper."""
    if x < 0:
        raise ValueError(f"log2 of negative {x}")
    return max(x.bit_length() - 1, 0)


def level(x: int) -> int:
    """Height of node ``x`` above the leaves (number of trailing one bits)."""
    if x < 0:
        raise ValueError(f"negative node index {x}")
    return (x ^ (x + 1)).bit_length() - 1


def _check_leaves(n_leaves: int) -> None:
    if n_leaves < 1 or n_leaves & (n_leaves - 1):
        raise ValueError(f"leaf count must be a power of two, got {n_leaves}")


def node_width(n_leaves: int) -> int:
    """Number of array slots for ``n_leaves`` leaves (0 for an empty tree)."""
    if n_leaves < 0:
        raise ValueError(f"negative leaf count {n_leaves}")
    return 0 if n_leaves == 0 else 2 * n_leaves - 1


def _check_node(x: int, n_leaves: int) -> None:
    _check_leaves(n_leaves)
    if x < 0 or x >= 2 * n_leaves - 1:
        raise ValueError(f"node {x} outside a tree of {n_leaves} leaves")


def root(n_leaves: int) -> int:
    _check_leaves(n_leaves)
    return n_leaves - 1


def is_leaf(x: int) -> bool:
    if x < 0:
        raise ValueError(f"negative node index {x}")
    return x & 1 == 0


def leaf_to_node(leaf_index: int) -> int:
    if leaf_index < 0:
        raise ValueError(f"negative leaf index {leaf_index}")
    return 2 * leaf_index


def node_to_leaf(x: int) -> int:
    if x < 0 or x & 1:
        raise ValueError(f"node {x} is not a leaf")
    return x >> 1


def left(x: int) -> int:
    k = level(x)
    if k == 0:
        raise ValueError(f"leaf {x} has no children")
    return x ^ (1 << (k - 1))


def right(x: int) -> int:
    k = level(x)
    if k == 0:
        raise ValueError(f"leaf {x} has no children")
    return x ^ (3 << (k - 1))


def parent(x: int, n_leaves: int) -> int:
    _check_node(x, n_leaves)
    if x == n_leaves - 1:
        raise ValueError("the root has no parent")
    k = level(x)
    # Set bit k, and clear bit k+1 when x is a left child's position inside its block.
    return (x | (1 << k)) & ~(1 << (k + 1))


def sibling(x: int, n_leaves: int) -> int:
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    """Ancestors of ``x`` from its parent up to and including the root (empty for the root)."""
    _check_node(x, n_leaves)
    r = n_leaves - 1
    out: list[int] = []
    k = level(x)
    while x != r:
        x = (x | (1 << k)) & ~(1 << (k + 1))
        k += 1
        out.append(x)
    return out


def copath(x: int, n_leaves: int) -> list[int]:
    """Siblings of ``x`` and of each of its ancestors below the root."""
    _check_node(x, n_leaves)
    r = n_leaves - 1
    out: list[int] = []
    k = level(x)
    while x != r:
        # Sibling differs from x in bit k+1 only (full tree).
        out.append(x ^ (1 << (k + 1)))
        x = (x | (1 << k)) & ~(1 << (k + 1))
        k += 1
    return out


def common_ancestor(x: int, y: int) -> int:
    """Lowest node whose subtree contains both ``x`` and ``y``."""
    if x < 0 or y < 0:
        raise ValueError("negative node index")
    k = max(level(x), level(y), (x ^ y).bit_length() - 1)
    # The subtree of a level-k node spans one aligned block of 2^(k+1) indices.
    return ((x >> (k + 1)) << (k + 1)) | ((1 << k) - 1)
