"""Leaf node validation (RFC 9420 section 7.3) and whole-tree validity on join (12.4.3.1).

Time is injected: ``now`` is seconds since the Unix epoch, or ``None`` to skip lifetime
checks (e.g. for leaves that joined long ago).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from mls.crypto.labels import sign_with_label, verify_with_label
from mls.crypto.suite import CipherSuite
from mls.errors import ValidationError
from mls.messages.common import MLS10
from mls.messages.extensions import RequiredCapabilities
from mls.messages.leaf_node import LeafNode, LeafNodeSource
from mls.messages.tree import ParentNode
from mls.tree.hashes import invalid_parent_hash_nodes
from mls.tree.ratchet_tree import RatchetTree

__all__ = [
    "DEFAULT_EXTENSION_TYPES",
    "DEFAULT_PROPOSAL_TYPES",
    "LeafValidationError",
    "TreeValidationError",
    "sign_leaf_node",
    "validate_leaf_node",
    "validate_tree",
    "verify_leaf_signature",
]

# RFC 9420 7.2: these are supported implicitly and need not be listed in capabilities.
DEFAULT_EXTENSION_TYPES = frozenset(range(1, 6))
DEFAULT_PROPOSAL_TYPES = frozenset(range(1, 8))
LEAF_LABEL = "LeafNodeTBS"


class LeafValidationError(ValidationError):
    """A LeafNode breaks a rule of RFC 9420 section 7.3."""


class TreeValidationError(ValidationError):
    """A ratchet tree received from a peer is not valid."""


def _tbs(leaf: LeafNode, group_id: bytes | None, leaf_index: int | None) -> bytes:
    if leaf.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
        return leaf.tbs()
    if group_id is None or leaf_index is None:
        raise LeafValidationError("update/commit leaf nodes are signed with group id and index")
    return leaf.tbs(group_id, leaf_index)


def verify_leaf_signature(
    suite: CipherSuite, leaf: LeafNode, group_id: bytes | None, leaf_index: int | None
) -> bool:
    return verify_with_label(
        suite, leaf.signature_key, LEAF_LABEL, _tbs(leaf, group_id, leaf_index), leaf.signature
    )


def sign_leaf_node(
    suite: CipherSuite,
    leaf: LeafNode,
    signature_priv: bytes,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
) -> LeafNode:
    """Return ``leaf`` with its signature over LeafNodeTBS filled in."""
    tbs = _tbs(leaf, group_id, leaf_index)
    return replace(leaf, signature=sign_with_label(suite, signature_priv, LEAF_LABEL, tbs))


def _check_capabilities(
    suite: CipherSuite,
    leaf: LeafNode,
    required: RequiredCapabilities | None,
    group_extension_types: Iterable[int] = (),
    require_suite: bool = False,
) -> None:
    caps = leaf.capabilities
    if MLS10 not in caps.versions:
        raise LeafValidationError("leaf does not support MLS 1.0")
    if require_suite and suite.suite_id not in caps.cipher_suites:
        raise LeafValidationError("leaf does not support the group's cipher suite")
    if leaf.credential.credential_type not in caps.credentials:
        raise LeafValidationError("leaf does not list its own credential type")
    for ext in leaf.extensions:
        t = ext.extension_type
        if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
            raise LeafValidationError(f"leaf uses extension {t} it does not support")
    for t in group_extension_types:
        if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
            raise LeafValidationError(f"leaf does not support group extension {t}")
    if required is not None:
        for t in required.extension_types:
            if t not in DEFAULT_EXTENSION_TYPES and t not in caps.extensions:
                raise LeafValidationError(f"leaf lacks required extension {t}")
        for t in required.proposal_types:
            if t not in DEFAULT_PROPOSAL_TYPES and t not in caps.proposals:
                raise LeafValidationError(f"leaf lacks required proposal type {t}")
        for t in required.credential_types:
            if t not in caps.credentials:
                raise LeafValidationError(f"leaf lacks required credential type {t}")


def validate_leaf_node(
    suite: CipherSuite,
    leaf: LeafNode,
    *,
    source: LeafNodeSource | None = None,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
    now: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
    tree: RatchetTree | None = None,
    replacing: int | None = None,
    group_extension_types: Iterable[int] = (),
    require_suite: bool = False,
) -> None:
    """Check one LeafNode as RFC 9420 section 7.3 asks.

    ``source``: the source the context demands (key_package for Add, update for Update,
    commit for an UpdatePath). ``tree``: the current group tree, for the credential and
    uniqueness checks against other members; ``replacing`` is the leaf index this node
    replaces (its own old keys do not count as duplicates). ``group_extension_types``: the
    types of the group context's extensions, each of which the leaf must support (13.4).
    ``require_suite``: also require the suite in ``capabilities.cipher_suites``. Section 7.3
    does not ask for it, and the official suite-7 TreeKEM vectors carry leaves that list
    suites 1-6 only, so it is applied to KeyPackages (13.4: a KeyPackage's client supports
    what it advertises, and we add it to a group of this suite) but not to leaves already
    in a tree or arriving in an UpdatePath or Update. Raises LeafValidationError.
    """
    if source is not None and leaf.leaf_node_source != source:
        raise LeafValidationError(
            f"leaf node source is {leaf.leaf_node_source.name}, expected {source.name}"
        )
    if not verify_leaf_signature(suite, leaf, group_id, leaf_index):
        raise LeafValidationError("bad leaf node signature")
    _check_capabilities(suite, leaf, required_capabilities, group_extension_types, require_suite)
    if now is not None and leaf.lifetime is not None:
        lt = leaf.lifetime
        if not lt.not_before <= now <= lt.not_after:
            raise LeafValidationError("leaf node lifetime does not cover the current time")
    if tree is not None:
        _check_against_members(leaf, tree.leaves(), replacing)


def _check_against_members(
    leaf: LeafNode, members: Iterable[tuple[int, LeafNode]], replacing: int | None
) -> None:
    ctype = leaf.credential.credential_type
    for idx, other in members:
        if idx == replacing:
            continue
        if other.encryption_key == leaf.encryption_key:
            raise LeafValidationError(f"encryption key already used by leaf {idx}")
        if other.signature_key == leaf.signature_key:
            raise LeafValidationError(f"signature key already used by leaf {idx}")
        if ctype not in other.capabilities.credentials:
            raise LeafValidationError(f"leaf {idx} does not support credential type {ctype}")
        if other.credential.credential_type not in leaf.capabilities.credentials:
            raise LeafValidationError(f"leaf does not support credential type of leaf {idx}")


def validate_tree(
    tree: RatchetTree,
    *,
    group_id: bytes,
    tree_hash: bytes | None = None,
    now: int | None = None,
    required_capabilities: RequiredCapabilities | None = None,
    group_extension_types: Iterable[int] = (),
) -> None:
    """Validity of a tree a new member receives (RFC 9420 section 12.4.3.1).

    Checks the tree hash (when given), that every non-blank parent is parent-hash valid,
    unmerged-leaf consistency, every leaf per section 7.3 (signature with ``group_id`` and its
    index, capabilities, credential support, key uniqueness) and unique parent HPKE keys.
    Raises TreeValidationError (or LeafValidationError for a bad leaf).
    """
    if tree_hash is not None and tree.tree_hash() != tree_hash:
        raise TreeValidationError("tree hash does not match the group context")
    _check_unmerged(tree)
    ext_types = tuple(group_extension_types)
    bad = invalid_parent_hash_nodes(tree)
    if bad:
        raise TreeValidationError(f"parent nodes {bad} are not parent-hash valid")
    enc_keys: set[bytes] = set()
    sig_keys: set[bytes] = set()
    in_use: set[int] = set()
    supported: set[int] | None = None
    for idx, leaf in tree.leaves():
        source = leaf.leaf_node_source
        try:
            validate_leaf_node(
                tree.suite,
                leaf,
                group_id=group_id if source != LeafNodeSource.KEY_PACKAGE else None,
                leaf_index=idx if source != LeafNodeSource.KEY_PACKAGE else None,
                now=now,
                required_capabilities=required_capabilities,
                group_extension_types=ext_types,
            )
        except LeafValidationError as exc:
            raise LeafValidationError(f"leaf {idx}: {exc}") from None
        if leaf.encryption_key in enc_keys or leaf.signature_key in sig_keys:
            raise TreeValidationError(f"leaf {idx} repeats another member's key")
        enc_keys.add(leaf.encryption_key)
        sig_keys.add(leaf.signature_key)
        in_use.add(leaf.credential.credential_type)
        creds = set(leaf.capabilities.credentials)
        supported = creds if supported is None else supported & creds
    if supported is not None and not in_use <= supported:
        raise TreeValidationError("a credential type in use is not supported by every member")
    for p in range(1, tree.n_nodes, 2):
        pn = tree.node(p)
        if pn is not None:
            assert isinstance(pn, ParentNode)
            if pn.encryption_key in enc_keys:
                raise TreeValidationError(f"parent {p} repeats an HPKE key")
            enc_keys.add(pn.encryption_key)


def _check_unmerged(tree: RatchetTree) -> None:
    for p in range(1, tree.n_nodes, 2):
        pn = tree.node(p)
        if pn is None:
            continue
        assert isinstance(pn, ParentNode)
        if len(set(pn.unmerged_leaves)) != len(pn.unmerged_leaves):
            raise TreeValidationError(f"parent {p} lists an unmerged leaf twice")
        start, end = tree.leaf_span(p)
        for u in pn.unmerged_leaves:
            if not start <= u < end or tree.leaf(u) is None:
                raise TreeValidationError(f"parent {p}: unmerged leaf {u} invalid")
            # Every non-blank node between the leaf and P must list it too.
            for q in tree.direct_path(2 * u):
                if q == p:
                    break
                qn = tree.node(q)
                if qn is not None:
                    assert isinstance(qn, ParentNode)
                    if u not in qn.unmerged_leaves:
                        raise TreeValidationError(
                            f"parent {q} misses unmerged leaf {u} listed by {p}"
                        )
