"""The ratchet tree and TreeKEM (RFC 9420 sections 4, 7 and 12.4.2)."""

from __future__ import annotations

from mls.tree.hashes import (
    apply_path_parent_hashes,
    invalid_parent_hash_nodes,
    verify_parent_hashes,
)
from mls.tree.ratchet_tree import RatchetTree, TreeError
from mls.tree.treekem import (
    CreatedPath,
    PathPrivate,
    ProcessedPath,
    TreeKemError,
    create_update_path,
    derive_node_key_pair,
    merge_update_path,
    next_path_secret,
    process_update_path,
)
from mls.tree.validation import (
    LeafValidationError,
    TreeValidationError,
    sign_leaf_node,
    validate_leaf_node,
    validate_tree,
    verify_leaf_signature,
)

__all__ = [
    "CreatedPath",
    "LeafValidationError",
    "PathPrivate",
    "ProcessedPath",
    "RatchetTree",
    "TreeError",
    "TreeKemError",
    "TreeValidationError",
    "apply_path_parent_hashes",
    "create_update_path",
    "derive_node_key_pair",
    "invalid_parent_hash_nodes",
    "merge_update_path",
    "next_path_secret",
    "process_update_path",
    "sign_leaf_node",
    "validate_leaf_node",
    "validate_tree",
    "verify_leaf_signature",
    "verify_parent_hashes",
]
