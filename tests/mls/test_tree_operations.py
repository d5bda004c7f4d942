"""tree-operations.json (Add/Update/Remove on a tree) and the tree's own bookkeeping: leftmost
blank slot, extension, truncation, unmerged leaves, and that cached hashes and resolutions
always equal a from-scratch computation."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto import get_suite
from mls.errors import DecodeError, MlsError
from mls.messages import (
    Add,
    LeafNode,
    Proposal,
    Remove,
    Update,
)
from mls.messages.tree import ParentNode
from mls.tree import RatchetTree, TreeError
from tests.mls.leaves import signed_leaf
from tests.vectors import case_id, vector_params

h = bytes.fromhex
SUITE = get_suite(1)


def _id(i: int, case: dict[str, Any]) -> str:
    return case_id(i, case, Proposal.from_bytes(h(case["proposal"])).body.__class__.__name__)


CASES = vector_params("mls/tree-operations.json", _id, suite_key="cipher_suite")


@pytest.mark.parametrize("case", CASES)
def test_tree_operations_vector(case: dict[str, Any]) -> None:
    tree = RatchetTree.from_bytes(get_suite(case["cipher_suite"]), h(case["tree_before"]))
    assert tree.tree_hash() == h(case["tree_hash_before"])
    body = Proposal.from_bytes(h(case["proposal"])).body
    if isinstance(body, Add):
        tree.add_leaf(body.key_package.leaf_node)
    elif isinstance(body, Update):
        tree.update_leaf(case["proposal_sender"], body.leaf_node)
    else:
        assert isinstance(body, Remove)
        tree.remove_leaf(body.removed)
    assert tree.to_bytes() == h(case["tree_after"])
    assert tree.tree_hash() == h(case["tree_hash_after"])
    # The cached result equals hashing the resulting tree from scratch.
    assert RatchetTree.from_bytes(tree.suite, tree.to_bytes()).tree_hash() == tree.tree_hash()


def _leaf(rng: random.Random, i: int) -> LeafNode:
    return signed_leaf(rng, i)[0]


def _fresh(tree: RatchetTree) -> RatchetTree:
    """The same nodes with empty caches."""
    return RatchetTree(tree.suite, list(tree.nodes()))


def _fill_parents(tree: RatchetTree, rng: random.Random) -> None:
    for p in range(1, tree.n_nodes, 2):
        tree.set_parent(p, ParentNode(rng.randbytes(32)))


def test_add_extends_and_uses_leftmost_blank() -> None:
    rng = random.Random(1)
    tree = RatchetTree(SUITE)
    assert tree.n_leaves == 1 and tree.member_count() == 0
    assert [tree.add_leaf(_leaf(rng, i)) for i in range(3)] == [0, 1, 2]
    assert tree.n_leaves == 4 and tree.n_nodes == 7
    tree.remove_leaf(1)
    assert tree.n_leaves == 4  # leaf 2 keeps the right half alive
    assert tree.add_leaf(_leaf(rng, 9)) == 1
    assert tree.add_leaf(_leaf(rng, 10)) == 3
    assert tree.add_leaf(_leaf(rng, 11)) == 4
    assert tree.n_leaves == 8


def test_add_marks_unmerged_on_non_blank_ancestors_only() -> None:
    rng = random.Random(2)
    tree = RatchetTree(SUITE)
    for i in range(3):
        tree.add_leaf(_leaf(rng, i))
    tree.set_parent(3, ParentNode(b"k" * 32))  # root non-blank, node 5 blank
    idx = tree.add_leaf(_leaf(rng, 3))
    assert idx == 3
    root = tree.node(3)
    assert isinstance(root, ParentNode) and root.unmerged_leaves == (3,)
    assert tree.node(5) is None
    assert tree.resolution(3) == (3, 6)
    assert tree.resolution(5) == (4, 6)


def test_remove_blanks_path_and_truncates() -> None:
    rng = random.Random(3)
    tree = RatchetTree(SUITE)
    for i in range(5):
        tree.add_leaf(_leaf(rng, i))
    _fill_parents(tree, rng)
    assert tree.n_leaves == 8
    tree.remove_leaf(4)
    assert tree.n_leaves == 4 and tree.n_nodes == 7
    # Leaf 4's path (9, 11, 7) went away with the right half; the left half is untouched.
    assert tree.node(tree.root) is not None and tree.node(1) is not None
    tree.remove_leaf(3)
    tree.remove_leaf(2)
    assert tree.n_leaves == 2
    tree.remove_leaf(1)
    assert tree.n_leaves == 1
    assert tree.to_bytes() == RatchetTree.from_bytes(SUITE, tree.to_bytes()).to_bytes()


def test_update_replaces_leaf_and_blanks_path() -> None:
    rng = random.Random(4)
    tree = RatchetTree(SUITE)
    for i in range(4):
        tree.add_leaf(_leaf(rng, i))
    _fill_parents(tree, rng)
    new = _leaf(rng, 99)
    tree.update_leaf(2, new)
    assert tree.leaf(2) == new
    assert tree.node(5) is None and tree.node(3) is None and tree.node(1) is not None


def test_operations_on_blank_or_missing_leaves_fail() -> None:
    rng = random.Random(5)
    tree = RatchetTree(SUITE)
    tree.add_leaf(_leaf(rng, 0))
    tree.add_leaf(_leaf(rng, 1))
    tree.remove_leaf(1)
    with pytest.raises(TreeError):
        tree.remove_leaf(1)
    with pytest.raises(TreeError):
        tree.update_leaf(5, _leaf(rng, 2))
    with pytest.raises(TreeError):
        tree.leaf(-1)
    assert isinstance(TreeError("x"), MlsError)


def test_filtered_direct_path_skips_empty_copath() -> None:
    rng = random.Random(6)
    tree = RatchetTree(SUITE)
    for i in range(5):
        tree.add_leaf(_leaf(rng, i))
    # Leaf 4's copath: node 10 (blank leaf), node 13 (blank subtree), node 3 (members).
    assert tree.copath(8) == [10, 13, 3]
    assert tree.filtered_direct_path(4) == [(7, 3)]
    assert tree.filtered_direct_path(0) == [(1, 2), (3, 5), (7, 11)]


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "update", "parent"]), st.integers(0, 31)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_cached_hashes_and_resolutions_match_fresh_tree(ops: list[tuple[str, int]]) -> None:
    rng = random.Random(len(ops))
    tree = RatchetTree(SUITE)
    counter = 0
    for op, arg in ops:
        members = [i for i, _ in tree.leaves()]
        if op == "add" or not members:
            tree.add_leaf(_LEAVES[counter % len(_LEAVES)])
            counter += 1
        elif op == "remove":
            tree.remove_leaf(members[arg % len(members)])
        elif op == "update":
            tree.update_leaf(members[arg % len(members)], _LEAVES[counter % len(_LEAVES)])
            counter += 1
        else:
            # As after a commit: a parent with members under both children (so it can never
            # end up right of the last member, which the encoding could not express).
            p = 2 * (arg % tree.n_leaves) + 1
            start, end = tree.leaf_span(p)
            mid = (start + end) // 2
            if (
                p < tree.n_nodes
                and any(start <= m < mid for m in members)
                and any(mid <= m < end for m in members)
            ):
                tree.set_parent(p, ParentNode(rng.randbytes(32)))
        tree.tree_hash()  # populate caches between operations
        fresh = _fresh(tree)
        assert tree.tree_hash() == fresh.tree_hash()
        for x in range(tree.n_nodes):
            assert tree.resolution(x) == fresh.resolution(x)
            assert tree.node_hash(x) == fresh.node_hash(x)
        if tree.member_count():
            again = RatchetTree.from_bytes(SUITE, tree.to_bytes())
            assert again.tree_hash() == tree.tree_hash()


_LEAVES = [_leaf(random.Random(1000 + i), i) for i in range(12)]


def test_copy_is_independent() -> None:
    tree = RatchetTree(SUITE)
    for leaf in _LEAVES[:3]:
        tree.add_leaf(leaf)
    before = tree.tree_hash()
    other = tree.copy()
    other.remove_leaf(2)
    assert tree.tree_hash() == before and tree.member_count() == 3
    assert other.tree_hash() != before
    assert other != tree and tree.copy() == tree


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_from_bytes_only_raises_decode_error(data: bytes) -> None:
    try:
        tree = RatchetTree.from_bytes(SUITE, data)
    except DecodeError:
        return
    assert tree.to_bytes() == data


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 11), min_size=1, max_size=10), st.integers(0, 9))
def test_roundtrip_of_built_trees(picks: list[int], mutate: int) -> None:
    tree = RatchetTree(SUITE)
    for i in dict.fromkeys(picks):
        tree.add_leaf(_LEAVES[i])
    data = tree.to_bytes()
    back = RatchetTree.from_bytes(SUITE, data)
    assert back.to_bytes() == data and back.tree_hash() == tree.tree_hash()
    corrupt = bytearray(data)
    corrupt[mutate % len(corrupt)] ^= 0x80
    with contextlib.suppress(DecodeError):
        RatchetTree.from_bytes(SUITE, bytes(corrupt))


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_cached_encoding_matches_wire_encoding(ops: list[tuple[str, int]]) -> None:
    # to_bytes reuses per-node encodings while the node object is unchanged; after any mix
    # of operations (on the tree and on copies) it must equal a from-scratch encoding.
    rng = random.Random(len(ops))
    tree = RatchetTree(SUITE)
    snapshots: list[tuple[RatchetTree, bytes]] = []
    for i, (op, arg) in enumerate(ops):
        members = [m for m, _ in tree.leaves()]
        if op == "add" or not members:
            tree.add_leaf(_LEAVES[i % len(_LEAVES)])
        elif op == "remove":
            tree.remove_leaf(members[arg % len(members)])
        elif op == "update":
            tree.update_leaf(members[arg % len(members)], _LEAVES[(i + 5) % len(_LEAVES)])
        else:
            p = 2 * (arg % tree.n_leaves) + 1
            if p < tree.n_nodes and any(2 * m > p for m in members):
                tree.set_parent(p, ParentNode(rng.randbytes(32), b"", ()))
        if tree.member_count():
            data = tree.to_bytes()
            assert data == tree.to_wire().to_bytes() == _fresh(tree).to_bytes()
            snapshots.append((tree.copy(), data))
    for copy, data in snapshots:  # later changes to the tree never leak into a copy
        assert copy.to_bytes() == data


def test_has_leaf_key() -> None:
    tree = RatchetTree(SUITE)
    for leaf in _LEAVES[:3]:
        tree.add_leaf(leaf)
    tree.remove_leaf(1)
    one, two = _LEAVES[1], _LEAVES[2]
    assert tree.has_leaf_key({two.signature_key}, set())
    assert tree.has_leaf_key(set(), {two.encryption_key})
    assert not tree.has_leaf_key({one.signature_key}, {one.encryption_key})  # removed
    assert not tree.has_leaf_key(set(), set())
