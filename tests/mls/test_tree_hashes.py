"""Tree hashes and parent hashes: vector values, incremental caching (a change rehashes only
its path), the "original sibling" hash, and parent-hash chains of fresh paths."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from typing import Any

import pytest

from mls.crypto import SUITES, get_suite
from mls.crypto.suite import CipherSuite
from mls.group_context import GroupContext
from mls.messages.tree import ParentNode
from mls.tree import (
    RatchetTree,
    apply_path_parent_hashes,
    invalid_parent_hash_nodes,
    verify_parent_hashes,
)
from mls.tree.treekem import create_update_path
from tests.mls.leaves import signed_leaf
from tests.vectors import case_id, vector_params

h = bytes.fromhex
SUITE = get_suite(1)


# Only the suites we implement: no skipped params for the others.
TREES = vector_params(
    "mls/tree-validation.json", case_id, select=lambda c: c["cipher_suite"] in SUITES
)


@pytest.mark.parametrize("case", TREES)
def test_node_hashes_match_vector(case: dict[str, Any]) -> None:
    tree = RatchetTree.from_bytes(get_suite(case["cipher_suite"]), h(case["tree"]))
    assert [tree.node_hash(x).hex() for x in range(tree.n_nodes)] == case["tree_hashes"]


@pytest.mark.parametrize("case", TREES)
def test_excluding_nothing_or_unrelated_leaves_is_the_cached_hash(case: dict[str, Any]) -> None:
    tree = RatchetTree.from_bytes(get_suite(case["cipher_suite"]), h(case["tree"]))
    for x in range(tree.n_nodes):
        assert tree.node_hash_excluding(x, frozenset()) == tree.node_hash(x)
        start, end = tree.leaf_span(x)
        outside = frozenset(u for u in range(tree.n_leaves) if not start <= u < end)
        assert tree.node_hash_excluding(x, outside) == tree.node_hash(x)


@pytest.mark.parametrize("case", TREES)
def test_excluding_leaves_equals_blanking_them(case: dict[str, Any]) -> None:
    tree = RatchetTree.from_bytes(get_suite(case["cipher_suite"]), h(case["tree"]))
    members = [i for i, _ in tree.leaves()]
    excluded = frozenset(members[::2])
    # Brute force: a copy where those leaves are blank and gone from every unmerged list.
    blanked = tree.copy()
    for u in excluded:
        blanked.set_leaf(u, None)
    for p in range(1, tree.n_nodes, 2):
        pn = blanked.node(p)
        if isinstance(pn, ParentNode):
            kept = tuple(u for u in pn.unmerged_leaves if u not in excluded)
            blanked.set_parent(p, replace(pn, unmerged_leaves=kept))
    for x in range(tree.n_nodes):
        assert tree.node_hash_excluding(x, excluded) == blanked.node_hash(x)


@dataclass(frozen=True, eq=False)
class CountingSuite(CipherSuite):
    """A suite that counts hash invocations (to check the caching really is incremental)."""

    calls: list[int] = None  # type: ignore[assignment]

    def hash(self, data: bytes) -> bytes:
        self.calls[0] += 1
        return super().hash(data)


def _counting() -> CountingSuite:
    return CountingSuite(
        SUITE.suite_id, SUITE.name, SUITE.hash_name, SUITE.hpke, SUITE.signature, [0]
    )


_leaf = signed_leaf


def test_mutation_rehashes_only_its_path() -> None:
    suite = _counting()
    rng = random.Random(1)
    tree = RatchetTree(suite)
    leaves = [_leaf(rng, i) for i in range(130)]
    for leaf, _ in leaves[:128]:
        tree.add_leaf(leaf)
    tree.tree_hash()
    assert suite.calls[0] == 255  # every node once
    suite.calls[0] = 0
    assert tree.tree_hash() == tree.tree_hash()
    assert suite.calls[0] == 0  # fully cached
    tree.remove_leaf(77)
    tree.tree_hash()
    assert suite.calls[0] == 8  # leaf + 7 ancestors
    suite.calls[0] = 0
    tree.add_leaf(leaves[128][0])  # takes the freed slot 77
    tree.tree_hash()
    assert suite.calls[0] == 8
    suite.calls[0] = 0
    tree.add_leaf(leaves[129][0])  # extends to 256 leaves: a blank right half
    tree.tree_hash()
    # The new right half (255 nodes) and the new root; the old tree stays cached.
    assert suite.calls[0] == 256


def test_resolution_cache_invalidated_on_change() -> None:
    rng = random.Random(2)
    tree = RatchetTree(SUITE)
    for i in range(8):
        tree.add_leaf(_leaf(rng, i)[0])
    assert tree.resolution(7) == (0, 2, 4, 6, 8, 10, 12, 14)
    tree.set_parent(3, ParentNode(b"a" * 32, b"", (1,)))
    assert tree.resolution(7) == (3, 2, 8, 10, 12, 14)
    tree.remove_leaf(5)
    assert tree.resolution(7) == (3, 2, 8, 12, 14)


def _ctx(tree_hash: bytes) -> bytes:
    return GroupContext(1, b"group", 5, tree_hash, b"\x00" * 32).encode()


def test_fresh_path_is_parent_hash_valid_and_tamper_is_caught() -> None:
    rng = random.Random(3)
    tree = RatchetTree(SUITE)
    members = [_leaf(rng, i) for i in range(11)]
    for leaf, _ in members:
        tree.add_leaf(leaf)
    # Commits from a few members fill in parents with genuine parent hashes.
    for sender in (0, 9, 5, 10):
        create_update_path(
            tree,
            sender,
            group_id=b"group",
            signature_priv=members[sender][1],
            group_context=_ctx,
            rng=rng.randbytes,
            hpke_rng=rng.randbytes,
        )
        assert verify_parent_hashes(tree)
    # An add leaves unmerged leaves behind without breaking validity.
    tree.add_leaf(_leaf(rng, 99)[0])
    assert verify_parent_hashes(tree)
    p = next(p for p in range(1, tree.n_nodes, 2) if tree.node(p) is not None)
    pn = tree.node(p)
    assert isinstance(pn, ParentNode)
    tree.set_parent(p, replace(pn, encryption_key=os.urandom(32)))
    assert invalid_parent_hash_nodes(tree)


def test_apply_path_parent_hashes_top_down() -> None:
    rng = random.Random(4)
    tree = RatchetTree(SUITE)
    for i in range(4):
        tree.add_leaf(_leaf(rng, i)[0])
    fdp = tree.filtered_direct_path(0)
    assert fdp == [(1, 2), (3, 5)]
    for p, _ in fdp:
        tree.set_parent(p, ParentNode(rng.randbytes(32)))
    leaf_ph = apply_path_parent_hashes(tree, fdp)
    root = tree.node(3)
    mid = tree.node(1)
    assert isinstance(root, ParentNode) and isinstance(mid, ParentNode)
    assert root.parent_hash == b""
    assert mid.parent_hash == tree.parent_hash(3, 5)
    assert leaf_ph == tree.parent_hash(1, 2)
    assert apply_path_parent_hashes(tree, []) == b""
