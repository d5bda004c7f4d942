"""treekem.json for all seven suites (process every UpdatePath from every listed member; create
fresh ones and have the others process them), plus tampering, new members and private state."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto import get_suite
from mls.crypto.suite import CipherSuite
from mls.errors import DecodeError, ValidationError
from mls.group_context import GroupContext
from mls.messages import (
    Capabilities,
    Credential,
    HPKECiphertext,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    UpdatePath,
    UpdatePathNode,
)
from mls.tree import RatchetTree, sign_leaf_node, verify_parent_hashes
from mls.tree.treekem import (
    PathPrivate,
    TreeKemError,
    create_update_path,
    derive_node_key_pair,
    merge_update_path,
    process_update_path,
)
from tests.vectors import case_id, vector_params

h = bytes.fromhex


CASES = vector_params(
    "mls/treekem.json",
    lambda i, c: case_id(i, c, f"paths{len(c['update_paths'])}"),
    suite_key="cipher_suite",
)


def _setup(case: dict[str, Any]) -> tuple[CipherSuite, RatchetTree, dict[int, PathPrivate], Any]:
    suite = get_suite(case["cipher_suite"])
    tree = RatchetTree.from_bytes(suite, h(case["ratchet_tree"]))
    privs: dict[int, PathPrivate] = {}
    for lp in case["leaves_private"]:
        idx = lp["index"]
        leaf = tree.leaf(idx)
        assert leaf is not None
        assert suite.hpke_public_key(h(lp["encryption_priv"])) == leaf.encryption_key
        assert suite.signature_public_key(h(lp["signature_priv"])) == leaf.signature_key
        keys = {}
        for entry in lp["path_secrets"]:
            priv, pub = derive_node_key_pair(suite, h(entry["path_secret"]))
            node = tree.node(entry["node"])
            assert node is not None and pub == node.encryption_key
            keys[entry["node"]] = priv
        privs[idx] = PathPrivate(idx, h(lp["encryption_priv"]), keys)

    def ctx(tree_hash: bytes) -> bytes:
        return GroupContext(
            case["cipher_suite"],
            h(case["group_id"]),
            case["epoch"],
            tree_hash,
            h(case["confirmed_transcript_hash"]),
        ).encode()

    return suite, tree, privs, ctx


@pytest.mark.parametrize("case", CASES)
def test_treekem_vector_process(case: dict[str, Any]) -> None:
    _suite, tree, privs, ctx = _setup(case)
    gid = h(case["group_id"])
    for up in case["update_paths"]:
        sender = up["sender"]
        path = UpdatePath.from_bytes(h(up["update_path"]))
        merged = tree.copy()
        merge_update_path(merged, sender, path, group_id=gid)
        assert merged.tree_hash() == h(up["tree_hash_after"])
        assert verify_parent_hashes(merged)
        processed = 0
        for idx, priv in privs.items():
            expected = up["path_secrets"][idx]
            if idx == sender:
                assert expected is None
                continue
            work = tree.copy()
            out = process_update_path(work, priv, sender, path, group_id=gid, group_context=ctx)
            assert out.path_secret == h(expected)
            assert out.commit_secret == h(up["commit_secret"])
            assert work.tree_hash() == h(up["tree_hash_after"])
            processed += 1
        assert processed == len(privs) - (sender in privs)


@pytest.mark.parametrize("case", CASES)
def test_treekem_vector_fresh_paths(case: dict[str, Any]) -> None:
    _suite, tree, privs, ctx = _setup(case)
    gid = h(case["group_id"])
    rng = random.Random(case["epoch"])
    for lp in case["leaves_private"]:
        sender = lp["index"]
        mine = tree.copy()
        created = create_update_path(
            mine,
            sender,
            group_id=gid,
            signature_priv=h(lp["signature_priv"]),
            group_context=ctx,
            rng=rng.randbytes,
        )
        assert verify_parent_hashes(mine)
        assert created.private.leaf_index == sender
        for idx, priv in privs.items():
            if idx == sender:
                continue
            theirs = tree.copy()
            out = process_update_path(
                theirs, priv, sender, created.update_path, group_id=gid, group_context=ctx
            )
            assert out.commit_secret == created.commit_secret
            assert theirs == mine and theirs.tree_hash() == mine.tree_hash()
            assert created.path_secret_for(mine, idx) == (out.node, out.path_secret)


# -- self-made groups ----------------------------------------------------------------------

SUITE = get_suite(1)
GID = b"treekem-group"


def _ctx(tree_hash: bytes) -> bytes:
    return GroupContext(1, GID, 7, tree_hash, b"\x11" * 32).encode()


class Member:
    def __init__(self, rng: random.Random, i: int) -> None:
        enc_priv, enc = SUITE.generate_key_pair(rng.randbytes)
        self.sig_priv, sig = SUITE.generate_signature_key_pair(rng.randbytes)
        leaf = LeafNode(
            enc,
            sig,
            Credential.basic(b"member-%d" % i),
            Capabilities(cipher_suites=(1,), credentials=(1,)),
            LeafNodeSource.KEY_PACKAGE,
            lifetime=Lifetime(0, 2**64 - 1),
        )
        self.leaf = sign_leaf_node(SUITE, leaf, self.sig_priv)
        self.enc_priv = enc_priv


def _group(
    n: int, seed: int = 0
) -> tuple[RatchetTree, list[Member], dict[int, PathPrivate], random.Random]:
    rng = random.Random(seed)
    members = [Member(rng, i) for i in range(n)]
    tree = RatchetTree(SUITE)
    privs = {}
    for m in members:
        idx = tree.add_leaf(m.leaf)
        privs[idx] = PathPrivate(idx, m.enc_priv)
    return tree, members, privs, rng


def _commit(
    tree: RatchetTree,
    members: list[Member],
    privs: dict[int, PathPrivate],
    sender: int,
    rng: random.Random,
) -> tuple[RatchetTree, bytes]:
    """Sender commits with a path; every other member processes it (``privs`` updated).
    Returns the new tree and the commit secret."""
    new_tree = tree.copy()
    created = create_update_path(
        new_tree,
        sender,
        group_id=GID,
        signature_priv=members[sender].sig_priv,
        group_context=_ctx,
        rng=rng.randbytes,
        hpke_rng=rng.randbytes,
    )
    for idx in list(privs):
        if idx == sender:
            continue
        theirs = tree.copy()
        out = process_update_path(
            theirs, privs[idx], sender, created.update_path, group_id=GID, group_context=_ctx
        )
        assert out.commit_secret == created.commit_secret
        assert theirs == new_tree
        privs[idx] = out.private
    privs[sender] = created.private
    return new_tree, created.commit_secret


def test_many_epochs_of_commits_keep_everyone_in_sync() -> None:
    tree, members, privs, rng = _group(9, seed=1)
    secrets = set()
    for sender in (0, 8, 3, 3, 5, 1, 7):
        tree, secret = _commit(tree, members, privs, sender, rng)
        secrets.add(secret)
        assert verify_parent_hashes(tree)
    assert len(secrets) == 7
    # After all these commits everyone holds a key for the root.
    for priv in privs.values():
        assert priv.key_for(tree.root) is not None


def test_new_member_excluded_then_joins_with_path_secret() -> None:
    tree, members, privs, rng = _group(5, seed=2)
    tree, _ = _commit(tree, members, privs, 0, rng)
    newcomer = Member(rng, 99)
    members.append(newcomer)
    provisional = tree.copy()
    new_idx = provisional.add_leaf(newcomer.leaf)
    created = create_update_path(
        provisional,
        2,
        group_id=GID,
        signature_priv=members[2].sig_priv,
        group_context=_ctx,
        rng=rng.randbytes,
        exclude=(new_idx,),
    )
    # The newcomer is in no ciphertext: the resolutions skipped it.
    total = sum(len(n.encrypted_path_secret) for n in created.update_path.nodes)
    with_it = provisional.copy()
    fdp_recipients = 0
    for _, sib in with_it.filtered_direct_path(2):
        fdp_recipients += len(with_it.resolution(sib))
    assert total == fdp_recipients - 1
    # The Welcome carries the path secret at the common ancestor.
    found = created.path_secret_for(provisional, new_idx)
    assert found is not None
    node, secret = found
    joined, commit_secret = PathPrivate(new_idx, newcomer.enc_priv).with_path_secret(
        SUITE, provisional, node, secret
    )
    assert commit_secret == created.commit_secret
    assert joined.key_for(provisional.root) is not None
    # A wrong path secret does not match the public keys.
    with pytest.raises(TreeKemError):
        PathPrivate(new_idx, newcomer.enc_priv).with_path_secret(
            SUITE, provisional, node, bytes(32)
        )


def test_single_member_path_is_empty() -> None:
    tree, members, _privs, rng = _group(1, seed=3)
    created = create_update_path(
        tree,
        0,
        group_id=GID,
        signature_priv=members[0].sig_priv,
        group_context=_ctx,
        rng=rng.randbytes,
    )
    assert created.update_path.nodes == ()
    assert len(created.commit_secret) == SUITE.nh
    assert tree.leaf(0) == created.update_path.leaf_node


def test_deterministic_with_injected_rngs() -> None:
    outs = []
    for _ in range(2):
        tree, members, _, _ = _group(6, seed=4)
        rng = random.Random(42)
        created = create_update_path(
            tree,
            4,
            group_id=GID,
            signature_priv=members[4].sig_priv,
            group_context=_ctx,
            rng=rng.randbytes,
            hpke_rng=rng.randbytes,
        )
        outs.append((created.update_path.to_bytes(), created.commit_secret))
    assert outs[0] == outs[1]


def _fresh_path(seed: int) -> tuple[RatchetTree, dict[int, PathPrivate], UpdatePath]:
    tree, members, privs, rng = _group(6, seed=seed)
    tree, _ = _commit(tree, members, privs, 1, rng)
    sender_tree = tree.copy()
    created = create_update_path(
        sender_tree,
        0,
        group_id=GID,
        signature_priv=members[0].sig_priv,
        group_context=_ctx,
        rng=rng.randbytes,
    )
    return tree, privs, created.update_path


def _process(tree: RatchetTree, priv: PathPrivate, path: UpdatePath) -> bytes:
    return process_update_path(
        tree.copy(), priv, 0, path, group_id=GID, group_context=_ctx
    ).commit_secret


def test_tampered_ciphertext_rejected() -> None:
    tree, privs, path = _fresh_path(5)
    node = path.nodes[-1]
    ct = node.encrypted_path_secret[0]
    bad_ct = HPKECiphertext(ct.kem_output, bytes([ct.ciphertext[0] ^ 1]) + ct.ciphertext[1:])
    bad_node = UpdatePathNode(node.encryption_key, (bad_ct, *node.encrypted_path_secret[1:]))
    bad = UpdatePath(path.leaf_node, (*path.nodes[:-1], bad_node))
    # Under the root the copath is node 11, resolution [8, 10]: leaf 4 reads ciphertext 0.
    assert _process(tree, privs[5], bad) == _process(tree, privs[5], path)
    with pytest.raises(TreeKemError, match="decrypt"):
        _process(tree, privs[4], bad)


def test_wrong_public_key_rejected() -> None:
    tree, privs, path = _fresh_path(6)
    node = path.nodes[-1]
    bad = UpdatePath(
        path.leaf_node,
        (*path.nodes[:-1], UpdatePathNode(bytes(32), node.encrypted_path_secret)),
    )
    with pytest.raises(TreeKemError, match="parent hash"):
        _process(tree, privs[3], bad)


def test_wrong_node_count_rejected() -> None:
    tree, privs, path = _fresh_path(7)
    with pytest.raises(TreeKemError, match="nodes"):
        _process(tree, privs[3], UpdatePath(path.leaf_node, path.nodes[:-1]))


def test_wrong_ciphertext_count_rejected() -> None:
    tree, privs, path = _fresh_path(8)
    node = path.nodes[-1]
    extra = UpdatePathNode(
        node.encryption_key, (*node.encrypted_path_secret, HPKECiphertext(b"", b""))
    )
    with pytest.raises(TreeKemError, match="ciphertexts"):
        _process(tree, privs[5], UpdatePath(path.leaf_node, (*path.nodes[:-1], extra)))


def test_bad_leaf_signature_and_source_rejected() -> None:
    tree, privs, path = _fresh_path(9)
    sig = bytes([path.leaf_node.signature[0] ^ 1]) + path.leaf_node.signature[1:]
    with pytest.raises(TreeKemError, match="signature"):
        _process(tree, privs[3], UpdatePath(replace(path.leaf_node, signature=sig), path.nodes))
    # Processing for the wrong sender index fails the signature (index is signed).
    with pytest.raises(TreeKemError):
        process_update_path(tree.copy(), privs[3], 2, path, group_id=GID, group_context=_ctx)


def test_reused_leaf_key_rejected() -> None:
    tree, members, _privs, _rng = _group(3, seed=10)
    old = tree.leaf(0)
    assert old is not None
    leaf = replace(old, leaf_node_source=LeafNodeSource.COMMIT, lifetime=None, parent_hash=b"")
    leaf = sign_leaf_node(SUITE, leaf, members[0].sig_priv, GID, 0)
    with pytest.raises(TreeKemError, match="old encryption key"):
        merge_update_path(tree.copy(), 0, UpdatePath(leaf, ()), group_id=GID)


def test_context_mismatch_fails_decryption() -> None:
    tree, privs, path = _fresh_path(11)

    def other_ctx(tree_hash: bytes) -> bytes:
        return GroupContext(1, GID, 8, tree_hash, b"\x11" * 32).encode()

    with pytest.raises(TreeKemError, match="decrypt"):
        process_update_path(tree.copy(), privs[3], 0, path, group_id=GID, group_context=other_ctx)


def test_cannot_process_own_path() -> None:
    tree, privs, path = _fresh_path(12)
    with pytest.raises(TreeKemError):
        process_update_path(tree.copy(), privs[0], 0, path, group_id=GID, group_context=_ctx)
    assert issubclass(TreeKemError, ValidationError)


def test_path_private_repr_and_storage() -> None:
    priv = PathPrivate(3, b"\x01" * 32, {7: b"\x02" * 32, 3: b"\x03" * 32})
    text = repr(priv)
    assert "01010101" not in text and "\\x01" not in text and "\\x02" not in text
    assert PathPrivate.from_bytes(priv.to_bytes()) == priv
    tree, _privs, _path = _fresh_path(13)
    created_repr = repr(
        create_update_path(
            tree.copy(),
            0,
            group_id=GID,
            signature_priv=b"\x05" * 32,
            group_context=_ctx,
            rng=random.Random(1).randbytes,
        )
    )
    assert "commit_secret" not in created_repr and "path_secrets" not in created_repr


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_path_private_decoder_only_raises_decode_error(data: bytes) -> None:
    try:
        priv = PathPrivate.from_bytes(data)
    except DecodeError:
        return
    assert priv.to_bytes() == data or PathPrivate.from_bytes(priv.to_bytes()) == priv
