"""MLS cryptographic primitives: cipher suites, HPKE, labeled functions."""

from __future__ import annotations

from mls.crypto.hpke import Rng
from mls.crypto.labels import (
    decrypt_with_label,
    derive_secret,
    derive_tree_secret,
    encrypt_with_label,
    expand_with_label,
    make_key_package_ref,
    make_proposal_ref,
    ref_hash,
    sign_with_label,
    verify_with_label,
)
from mls.crypto.suite import SUITES, CipherSuite, get_suite

__all__ = [
    "SUITES",
    "CipherSuite",
    "Rng",
    "decrypt_with_label",
    "derive_secret",
    "derive_tree_secret",
    "encrypt_with_label",
    "expand_with_label",
    "get_suite",
    "make_key_package_ref",
    "make_proposal_ref",
    "ref_hash",
    "sign_with_label",
    "verify_with_label",
]
