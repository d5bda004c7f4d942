"""Signed random leaves for tree tests (suite 1, basic credentials)."""

from __future__ import annotations

import random

from mls.crypto import get_suite
from mls.messages import Capabilities, Credential, LeafNode, LeafNodeSource, Lifetime
from mls.tree import sign_leaf_node

SUITE = get_suite(1)


def signed_leaf(rng: random.Random, i: int) -> tuple[LeafNode, bytes]:
    """A key-package leaf for member ``i`` and its signature private key."""
    _, enc = SUITE.generate_key_pair(rng.randbytes)
    sig_priv, sig = SUITE.generate_signature_key_pair(rng.randbytes)
    leaf = LeafNode(
        enc,
        sig,
        Credential.basic(b"m%d" % i),
        Capabilities(cipher_suites=(1,), credentials=(1,)),
        LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(0, 2**64 - 1),
    )
    return sign_leaf_node(SUITE, leaf, sig_priv), sig_priv
