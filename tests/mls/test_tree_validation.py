"""tree-validation.json for all seven suites, plus leaf (RFC 9420 7.3) and tree validity rules."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from mls.crypto import SUITES, get_suite
from mls.messages import Capabilities, Credential, Extension, LeafNode, LeafNodeSource, Lifetime
from mls.messages.extensions import RequiredCapabilities
from mls.messages.tree import ParentNode
from mls.tree import (
    LeafValidationError,
    RatchetTree,
    TreeValidationError,
    invalid_parent_hash_nodes,
    sign_leaf_node,
    validate_leaf_node,
    validate_tree,
    verify_leaf_signature,
    verify_parent_hashes,
)
from tests.vectors import case_id, load_vectors, vector_params

h = bytes.fromhex
SUITE = get_suite(1)
LIFETIME = Lifetime(100, 200)


VECTOR = "mls/tree-validation.json"


@pytest.mark.parametrize("case", vector_params(VECTOR, case_id, suite_key="cipher_suite"))
def test_tree_validation_vector(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(suite, h(case["tree"]))
    assert tree.n_nodes == len(case["tree_hashes"]) == len(case["resolutions"])
    for x, expected in enumerate(case["tree_hashes"]):
        assert tree.node_hash(x).hex() == expected, f"node {x}"
    for x, expected in enumerate(case["resolutions"]):
        assert list(tree.resolution(x)) == expected, f"node {x}"
    assert verify_parent_hashes(tree)
    gid = h(case["group_id"])
    validate_tree(tree, group_id=gid, tree_hash=h(case["tree_hashes"][tree.root]))
    for idx, leaf in tree.leaves():
        assert verify_leaf_signature(suite, leaf, gid, idx)
    assert tree.to_bytes() == h(case["tree"])


def _case_with(pred: Any) -> tuple[RatchetTree, bytes]:
    for case in load_vectors(VECTOR):
        if case["cipher_suite"] not in SUITES:
            continue
        suite = get_suite(case["cipher_suite"])
        tree = RatchetTree.from_bytes(suite, h(case["tree"]))
        if pred(tree):
            return tree, h(case["group_id"])
    pytest.skip("no vector tree with the needed shape")


def _has_parents(tree: RatchetTree) -> bool:
    return any(tree.node(p) is not None for p in range(1, tree.n_nodes, 2))


def _has_unmerged(tree: RatchetTree) -> bool:
    return any(
        isinstance(n := tree.node(p), ParentNode) and n.unmerged_leaves
        for p in range(1, tree.n_nodes, 2)
    )


def test_bad_leaf_signature_rejected() -> None:
    tree, gid = _case_with(lambda t: t.member_count() > 1)
    idx, leaf = next(iter(tree.leaves()))
    sig = bytearray(leaf.signature)
    sig[0] ^= 1
    tree.set_leaf(idx, replace(leaf, signature=bytes(sig)))
    with pytest.raises(LeafValidationError):
        validate_tree(tree, group_id=gid)


def test_wrong_group_id_rejected() -> None:
    tree, gid = _case_with(
        lambda t: any(ln.leaf_node_source != LeafNodeSource.KEY_PACKAGE for _, ln in t.leaves())
    )
    with pytest.raises(LeafValidationError):
        validate_tree(tree, group_id=gid + b"x")


def test_tree_hash_mismatch_rejected() -> None:
    tree, gid = _case_with(lambda t: True)
    with pytest.raises(TreeValidationError):
        validate_tree(tree, group_id=gid, tree_hash=bytes(32))


def test_tampered_parent_hash_detected() -> None:
    tree, gid = _case_with(_has_parents)
    p = next(p for p in range(1, tree.n_nodes, 2) if tree.node(p) is not None)
    pn = tree.node(p)
    assert isinstance(pn, ParentNode)
    tree.set_parent(p, replace(pn, encryption_key=bytes(len(pn.encryption_key))))
    assert not verify_parent_hashes(tree)
    with pytest.raises(TreeValidationError):
        validate_tree(tree, group_id=gid)


def test_unmerged_leaf_must_be_listed_on_intermediate_nodes() -> None:
    tree, gid = _case_with(_has_unmerged)
    p = next(
        p
        for p in range(1, tree.n_nodes, 2)
        if isinstance(n := tree.node(p), ParentNode) and n.unmerged_leaves
    )
    pn = tree.node(p)
    assert isinstance(pn, ParentNode)
    # Dropping the entry from P breaks P's parent-hash validity or unmerged consistency.
    tree.set_parent(p, replace(pn, unmerged_leaves=pn.unmerged_leaves[1:]))
    with pytest.raises(TreeValidationError):
        validate_tree(tree, group_id=gid)


def test_unmerged_leaf_outside_subtree_rejected() -> None:
    def non_root_parent(t: RatchetTree) -> int | None:
        return next(
            (p for p in range(1, t.n_nodes, 2) if t.node(p) is not None and p != t.root), None
        )

    tree, gid = _case_with(lambda t: non_root_parent(t) is not None)
    p = non_root_parent(tree)
    assert p is not None
    pn = tree.node(p)
    assert isinstance(pn, ParentNode)
    start, end = tree.leaf_span(p)
    outside = end if end < tree.n_leaves else start - 1
    tree.set_parent(p, replace(pn, unmerged_leaves=(*pn.unmerged_leaves, outside)))
    with pytest.raises(TreeValidationError):
        validate_tree(tree, group_id=gid)


def test_invalid_parent_hash_nodes_lists_the_culprit() -> None:
    tree, _ = _case_with(_has_parents)
    p = next(p for p in range(1, tree.n_nodes, 2) if tree.node(p) is not None)
    pn = tree.node(p)
    assert isinstance(pn, ParentNode)
    tree.set_parent(p, replace(pn, parent_hash=b"\x01" * 32))
    assert p in invalid_parent_hash_nodes(tree)


# -- leaf node validation (section 7.3) ----------------------------------------------------


def _leaf(
    rng: random.Random,
    *,
    source: LeafNodeSource = LeafNodeSource.KEY_PACKAGE,
    caps: Capabilities | None = None,
    extensions: tuple[Extension, ...] = (),
    credential: Credential | None = None,
    lifetime: Lifetime | None = LIFETIME,
    group_id: bytes | None = None,
    index: int | None = None,
) -> LeafNode:
    _, enc = SUITE.generate_key_pair(rng.randbytes)
    sig_priv, sig = SUITE.generate_signature_key_pair(rng.randbytes)
    leaf = LeafNode(
        enc,
        sig,
        credential or Credential.basic(rng.randbytes(8)),
        caps or Capabilities(cipher_suites=(1,), credentials=(1,)),
        source,
        extensions,
        lifetime=lifetime if source == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=b"" if source == LeafNodeSource.COMMIT else None,
    )
    return sign_leaf_node(SUITE, leaf, sig_priv, group_id, index)


def test_valid_key_package_leaf() -> None:
    leaf = _leaf(random.Random(1))
    validate_leaf_node(SUITE, leaf, source=LeafNodeSource.KEY_PACKAGE, now=150)


def test_source_mismatch() -> None:
    leaf = _leaf(random.Random(2))
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, leaf, source=LeafNodeSource.UPDATE)


@pytest.mark.parametrize(("now", "ok"), [(99, False), (100, True), (200, True), (201, False)])
def test_lifetime_uses_injected_clock(now: int, ok: bool) -> None:
    leaf = _leaf(random.Random(3))
    if ok:
        validate_leaf_node(SUITE, leaf, now=now)
    else:
        with pytest.raises(LeafValidationError):
            validate_leaf_node(SUITE, leaf, now=now)
    validate_leaf_node(SUITE, leaf, now=None)  # no clock: lifetime not checked


def test_update_leaf_signature_binds_group_and_index() -> None:
    leaf = _leaf(random.Random(4), source=LeafNodeSource.UPDATE, group_id=b"g", index=3)
    validate_leaf_node(SUITE, leaf, group_id=b"g", leaf_index=3)
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, leaf, group_id=b"g", leaf_index=2)
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, leaf, group_id=b"h", leaf_index=3)
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, leaf)  # update leaves need the group id and index


@pytest.mark.parametrize(
    "caps",
    [
        Capabilities(versions=(2,), cipher_suites=(1,), credentials=(1,)),
        Capabilities(cipher_suites=(1,), credentials=(2,)),  # not its own credential
    ],
)
def test_capabilities_must_cover_leaf(caps: Capabilities) -> None:
    leaf = _leaf(random.Random(5), caps=caps)
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, leaf)


def test_suite_in_capabilities_required_for_key_packages_only() -> None:
    # RFC 9420 7.3 does not ask for it (and the suite-7 TreeKEM vectors' leaves list 1-6).
    leaf = _leaf(random.Random(5), caps=Capabilities(cipher_suites=(3,), credentials=(1,)))
    validate_leaf_node(SUITE, leaf)
    with pytest.raises(LeafValidationError, match="cipher suite"):
        validate_leaf_node(SUITE, leaf, require_suite=True)


def test_leaf_extensions_must_be_supported() -> None:
    ext = (Extension(0xFF00, b"x"),)
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, _leaf(random.Random(6), extensions=ext))
    caps = Capabilities(cipher_suites=(1,), extensions=(0xFF00,), credentials=(1,))
    validate_leaf_node(SUITE, _leaf(random.Random(6), extensions=ext, caps=caps))
    # Default extension types need no listing.
    validate_leaf_node(SUITE, _leaf(random.Random(6), extensions=(Extension(1, b"app"),)))


def test_required_capabilities() -> None:
    req = RequiredCapabilities(extension_types=(0xFF01,), proposal_types=(0xFF02,))
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, _leaf(random.Random(7)), required_capabilities=req)
    caps = Capabilities(
        cipher_suites=(1,), extensions=(0xFF01,), proposals=(0xFF02,), credentials=(1,)
    )
    validate_leaf_node(SUITE, _leaf(random.Random(7), caps=caps), required_capabilities=req)
    req_cred = RequiredCapabilities(credential_types=(2,))
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, _leaf(random.Random(7)), required_capabilities=req_cred)


def test_keys_unique_among_members() -> None:
    rng = random.Random(8)
    tree = RatchetTree(SUITE)
    first = _leaf(rng)
    tree.add_leaf(first)
    tree.add_leaf(_leaf(rng))
    other = _leaf(rng)
    validate_leaf_node(SUITE, other, tree=tree)
    clash = replace(other, encryption_key=first.encryption_key)
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, clash, tree=tree)
    # The leaf being replaced does not count as a clash (only the signature is stale here).
    with pytest.raises(LeafValidationError, match="signature"):
        validate_leaf_node(SUITE, clash, tree=tree, replacing=0)


def test_credential_type_must_be_supported_by_members() -> None:
    rng = random.Random(9)
    tree = RatchetTree(SUITE)
    tree.add_leaf(_leaf(rng))
    x509_caps = Capabilities(cipher_suites=(1,), credentials=(1, 2))
    newcomer = _leaf(rng, caps=x509_caps, credential=Credential.x509((b"cert",)))
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, newcomer, tree=tree)
    narrow = _leaf(
        rng,
        caps=Capabilities(cipher_suites=(1,), credentials=(2,)),
        credential=Credential.x509((b"c",)),
    )
    with pytest.raises(LeafValidationError):
        validate_leaf_node(SUITE, narrow, tree=tree)


def test_validate_tree_rejects_duplicate_keys() -> None:
    rng = random.Random(10)
    tree = RatchetTree(SUITE)
    a = _leaf(rng)
    tree.add_leaf(a)
    tree.add_leaf(_leaf(rng))
    validate_tree(tree, group_id=b"g")
    b = _leaf(rng)
    tree.add_leaf(replace(b, signature_key=a.signature_key))
    with pytest.raises((TreeValidationError, LeafValidationError)):
        validate_tree(tree, group_id=b"g")
