"""secret-tree.json for all seven suites; out-of-order, reuse, bounds and laziness."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto import SUITES, get_suite
from mls.crypto.labels import derive_tree_secret, expand_with_label
from mls.errors import DecodeError
from mls.secret_tree import (
    GenerationTooFarError,
    GenerationTooOldError,
    KeyReuseError,
    RatchetType,
    SecretTree,
    SecretTreeError,
    sender_data_key_nonce,
)
from tests.vectors import case_id, load_vectors, vector_params

h = bytes.fromhex
SUITE = get_suite(1)


VECTOR = "mls/secret-tree.json"
CASES = vector_params(
    VECTOR, lambda i, c: case_id(i, c, f"leaves{len(c['leaves'])}"), suite_key="cipher_suite"
)


@pytest.mark.parametrize("case", CASES)
def test_secret_tree_vector(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    sd = case["sender_data"]
    key, nonce = sender_data_key_nonce(suite, h(sd["sender_data_secret"]), h(sd["ciphertext"]))
    assert (key, nonce) == (h(sd["key"]), h(sd["nonce"]))

    leaves = case["leaves"]
    tree = SecretTree(suite, h(case["encryption_secret"]), len(leaves))
    checked = 0
    for leaf, generations in enumerate(leaves):
        for g in generations:
            hs = tree.handshake_key(leaf, g["generation"])
            app = tree.application_key(leaf, g["generation"])
            assert (hs.key, hs.nonce) == (h(g["handshake_key"]), h(g["handshake_nonce"]))
            assert (app.key, app.nonce) == (h(g["application_key"]), h(g["application_nonce"]))
            checked += 1
    assert checked == sum(len(gs) for gs in leaves) > 0
    # Every node secret was consumed: only leaf ratchets remain.
    assert tree._nodes == {}


def test_vector_counts() -> None:
    cases = load_vectors(VECTOR)
    assert sorted((c["cipher_suite"], len(c["leaves"])) for c in cases) == [
        (suite, n) for suite in sorted(SUITES) for n in (1, 8, 32)
    ]


def _reference_key(secret: bytes, n_leaves: int, leaf: int, label: str, gen: int) -> bytes:
    """Straightforward eager derivation, to check the lazy tree against."""
    lo, hi, s = 0, n_leaves, secret
    while hi - lo > 1:
        mid = (lo + hi) // 2
        side = b"left" if leaf < mid else b"right"
        s = expand_with_label(SUITE, s, "tree", side, 32)
        lo, hi = (lo, mid) if leaf < mid else (mid, hi)
    s = expand_with_label(SUITE, s, label, b"", 32)
    for j in range(gen):
        s = derive_tree_secret(SUITE, s, "secret", j, 32)
    return derive_tree_secret(SUITE, s, "key", gen, SUITE.nk)


def test_lazy_matches_eager_and_derives_only_paths() -> None:
    secret = b"\x11" * 32
    tree = SecretTree(SUITE, secret, 16)
    k = tree.application_key(5, 3)
    assert k.key == _reference_key(secret, 16, 5, "application", 3)
    # One path down: 4 levels, each leaving a sibling behind; leaf 5 itself was consumed.
    assert len(tree._nodes) == 4
    assert tree.handshake_key(5, 0).key == _reference_key(secret, 16, 5, "handshake", 0)
    assert tree.application_key(10, 0).key == _reference_key(secret, 16, 10, "application", 0)


def test_out_of_order_then_reuse_refused() -> None:
    tree = SecretTree(SUITE, b"\x01" * 32, 4)
    k5 = tree.application_key(1, 5)
    k2 = tree.application_key(1, 2)
    k0 = tree.application_key(1, 0)
    assert len({k5.key, k2.key, k0.key}) == 3
    for g in (0, 2, 5):
        with pytest.raises(KeyReuseError):
            tree.application_key(1, g)
    # Remaining skipped generations are still there, and the handshake ratchet is separate.
    assert tree.application_key(1, 4).generation == 4
    assert tree.handshake_key(1, 5).key != k5.key
    assert tree.application_key(1, 6).generation == 6


def test_sender_and_receiver_agree() -> None:
    sender = SecretTree(SUITE, b"\x02" * 32, 8)
    receiver = SecretTree(SUITE, b"\x02" * 32, 8)
    sent = [sender.next_application_key(3) for _ in range(5)]
    assert [k.generation for k in sent] == [0, 1, 2, 3, 4]
    for k in reversed(sent):
        assert receiver.application_key(3, k.generation) == k
    hs = sender.next_handshake_key(3)
    assert receiver.key_for(3, RatchetType.HANDSHAKE, 0) == hs


def test_forward_bound() -> None:
    tree = SecretTree(SUITE, b"\x03" * 32, 2, max_forward=10)
    with pytest.raises(GenerationTooFarError):
        tree.application_key(0, 11)
    assert tree.application_key(0, 10).generation == 10
    with pytest.raises(GenerationTooFarError):
        tree.application_key(0, 21 + 1)
    assert tree.application_key(0, 21).generation == 21
    with pytest.raises(GenerationTooFarError):
        tree.application_key(1, 2**32)
    with pytest.raises(GenerationTooFarError):
        tree.application_key(1, -1)


def test_past_window_forgets() -> None:
    tree = SecretTree(SUITE, b"\x04" * 32, 2, max_forward=100, max_past=5)
    tree.application_key(0, 20)
    ratchet = tree._ratchets[(0, RatchetType.APPLICATION)]
    assert sorted(ratchet.skipped) == [16, 17, 18, 19]
    with pytest.raises(GenerationTooOldError):
        tree.application_key(0, 3)
    assert tree.application_key(0, 17).generation == 17
    with pytest.raises(KeyReuseError):
        tree.application_key(0, 17)
    tree.application_key(0, 30)
    assert min(tree._ratchets[(0, RatchetType.APPLICATION)].skipped) == 26
    with pytest.raises(GenerationTooOldError):
        tree.application_key(0, 18)


def test_bad_leaf_and_tree_size() -> None:
    tree = SecretTree(SUITE, b"\x05" * 32, 4)
    for leaf in (4, -1, 100):
        with pytest.raises(SecretTreeError):
            tree.application_key(leaf, 0)
    with pytest.raises(ValueError):
        SecretTree(SUITE, b"\x05" * 32, 3)
    with pytest.raises(ValueError):
        SecretTree(SUITE, b"\x05" * 32, 4, max_forward=-1)


def test_single_leaf_tree_and_repr() -> None:
    secret = b"\x06" * 32
    tree = SecretTree(SUITE, secret, 1)
    k = tree.next_application_key(0)
    assert k.key == _reference_key(secret, 1, 0, "application", 0)
    text = repr(tree) + repr(k)
    assert k.key.hex() not in text and k.nonce.hex() not in text and secret.hex() not in text


def test_sender_data_sample_is_first_nh_bytes() -> None:
    secret = b"\x07" * 32
    long_ct = bytes(range(64))
    assert sender_data_key_nonce(SUITE, secret, long_ct) == sender_data_key_nonce(
        SUITE, secret, long_ct[:32]
    )
    short = sender_data_key_nonce(SUITE, secret, b"abc")
    assert short != sender_data_key_nonce(SUITE, secret, b"abd")
    assert (len(short[0]), len(short[1])) == (SUITE.nk, SUITE.nn)


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(12))), st.integers(0, 3))
def test_any_arrival_order_within_bounds(order: list[int], leaf: int) -> None:
    sender = SecretTree(SUITE, b"\x08" * 32, 4)
    receiver = SecretTree(SUITE, b"\x08" * 32, 4, max_forward=12, max_past=12)
    sent = [sender.next_application_key(leaf) for _ in range(12)]
    for g in order:
        assert receiver.application_key(leaf, g) == sent[g]
    for g in order[:3]:
        with pytest.raises(KeyReuseError):
            receiver.application_key(leaf, g)
    assert receiver._ratchets[(leaf, RatchetType.APPLICATION)].skipped == {}


def test_state_round_trip_continues_identically() -> None:
    tree = SecretTree(SUITE, b"\x09" * 32, 8, max_forward=50, max_past=20)
    tree.application_key(2, 7)
    tree.handshake_key(5, 0)
    tree.next_application_key(6)
    data = tree.to_bytes()
    copy = SecretTree.from_bytes(SUITE, data)
    assert copy.to_bytes() == data
    assert (copy.max_forward, copy.max_past, copy.n_leaves) == (50, 20, 8)
    for t in (tree, copy):
        with pytest.raises(KeyReuseError):
            t.application_key(2, 7)
    assert copy.application_key(2, 3) == tree.application_key(2, 3)
    assert copy.application_key(0, 4) == tree.application_key(0, 4)
    assert copy.next_application_key(6) == tree.next_application_key(6)
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(SUITE, data + b"\x00")
    with pytest.raises(DecodeError):
        SecretTree.from_bytes(get_suite(3), data[:-1])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_state_decode_random(data: bytes) -> None:
    try:
        tree = SecretTree.from_bytes(SUITE, data)
    except DecodeError:
        return
    assert tree.to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_state_decode_mutations(data: st.DataObject) -> None:
    tree = SecretTree(SUITE, b"\x0a" * 32, 4)
    tree.application_key(1, 3)
    raw = bytearray(tree.to_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    # Only the typed error may escape; whatever decodes must re-encode to the same bytes.
    try:
        tree2 = SecretTree.from_bytes(SUITE, bytes(raw))
    except DecodeError:
        return
    assert tree2.to_bytes() == bytes(raw)


def test_peek_does_not_consume_and_consume_does() -> None:
    sender = SecretTree(SUITE, b"\x0b" * 32, 4)
    receiver = SecretTree(SUITE, b"\x0b" * 32, 4, max_forward=20, max_past=20)
    sent = [sender.next_application_key(2) for _ in range(6)]
    # Peeking ahead derives forward and keeps the skipped keys and the peeked one.
    assert receiver.peek_key(2, RatchetType.APPLICATION, 4) == sent[4]
    assert receiver.peek_key(2, RatchetType.APPLICATION, 4) == sent[4]
    ratchet = receiver._ratchets[(2, RatchetType.APPLICATION)]
    assert sorted(ratchet.skipped) == [0, 1, 2, 3, 4] and ratchet.generation == 5
    assert receiver.consume(2, RatchetType.APPLICATION, 4) == sent[4]
    for op in (receiver.peek_key, receiver.consume, receiver.key_for):
        with pytest.raises(KeyReuseError):
            op(2, RatchetType.APPLICATION, 4)
    # consume without a prior peek derives the key itself; the other ratchet is untouched.
    assert receiver.consume(2, RatchetType.APPLICATION, 5) == sent[5]
    assert receiver.peek_key(2, RatchetType.APPLICATION, 1) == sent[1]
    assert receiver.application_key(2, 1) == sent[1]
    assert sorted(ratchet.skipped) == [0, 2, 3]
    assert receiver.peek_key(2, RatchetType.HANDSHAKE, 0) != sent[0]


def test_peek_respects_bounds() -> None:
    tree = SecretTree(SUITE, b"\x0c" * 32, 2, max_forward=4, max_past=2)
    with pytest.raises(GenerationTooFarError):
        tree.peek_key(0, RatchetType.APPLICATION, 5)
    with pytest.raises(GenerationTooFarError):
        tree.peek_key(0, RatchetType.APPLICATION, -1)
    with pytest.raises(SecretTreeError):
        tree.peek_key(2, RatchetType.APPLICATION, 0)
    tree.peek_key(0, RatchetType.APPLICATION, 4)
    # Only the window behind the newest derived generation is kept (plus the peeked key).
    assert sorted(tree._ratchets[(0, RatchetType.APPLICATION)].skipped) == [3, 4]
    with pytest.raises(GenerationTooOldError):
        tree.peek_key(0, RatchetType.APPLICATION, 1)
    assert tree._ratchets[(0, RatchetType.APPLICATION)].generation == 5


def test_peek_survives_zero_past_window_until_consumed() -> None:
    sender = SecretTree(SUITE, b"\x0d" * 32, 2)
    receiver = SecretTree(SUITE, b"\x0d" * 32, 2, max_past=0)
    sent = [sender.next_handshake_key(1) for _ in range(3)]
    # A failed authentication after the peek must leave the key usable for the real message.
    assert receiver.peek_key(1, RatchetType.HANDSHAKE, 2) == sent[2]
    assert receiver.handshake_key(1, 2) == sent[2]
    # Replay is refused; with no past window everything behind the ratchet counts as too old.
    with pytest.raises(GenerationTooOldError):
        receiver.handshake_key(1, 2)
    # With no past window the skipped generations were never kept.
    with pytest.raises(GenerationTooOldError):
        receiver.handshake_key(1, 0)


def test_peeked_key_persists_in_state() -> None:
    tree = SecretTree(SUITE, b"\x0e" * 32, 4)
    key = tree.peek_key(3, RatchetType.APPLICATION, 2)
    copy = SecretTree.from_bytes(SUITE, tree.to_bytes())
    assert copy.to_bytes() == tree.to_bytes()
    assert copy.consume(3, RatchetType.APPLICATION, 2) == key
    with pytest.raises(KeyReuseError):
        copy.consume(3, RatchetType.APPLICATION, 2)


def test_error_classes_live_in_mls_errors() -> None:
    from mls import errors, secret_tree

    for name in (
        "SecretTreeError",
        "KeyReuseError",
        "GenerationTooOldError",
        "GenerationTooFarError",
    ):
        assert getattr(secret_tree, name) is getattr(errors, name)
        assert issubclass(getattr(errors, name), errors.CryptoError)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.booleans()), max_size=40))
def test_peek_consume_model(ops: list[tuple[int, bool]]) -> None:
    """Any interleaving of peeks and consumes within bounds: peeks always return the sender's
    key until that generation is consumed, then every request raises KeyReuseError."""
    sender = SecretTree(SUITE, b"\x0f" * 32, 2)
    receiver = SecretTree(SUITE, b"\x0f" * 32, 2, max_forward=12, max_past=12)
    sent = [sender.next_application_key(0) for _ in range(12)]
    consumed: set[int] = set()
    for g, do_consume in ops:
        op = receiver.consume if do_consume else receiver.peek_key
        if g in consumed:
            with pytest.raises(KeyReuseError):
                op(0, RatchetType.APPLICATION, g)
            continue
        assert op(0, RatchetType.APPLICATION, g) == sent[g]
        if do_consume:
            consumed.add(g)


def test_transaction_rolls_back_every_change_on_error() -> None:
    tree = SecretTree(SUITE, b"\x0d" * 32, 8, max_forward=10, max_past=3)
    tree.next_application_key(1)
    tree.peek_key(5, RatchetType.APPLICATION, 2)
    before = tree.to_bytes()
    with pytest.raises(RuntimeError), tree.transaction():
        tree.consume(5, RatchetType.APPLICATION, 2)  # existing ratchet: kept key spent
        tree.consume(5, RatchetType.APPLICATION, 9)  # jump ahead: prunes old kept keys
        tree.next_handshake_key(1)
        tree.consume(6, RatchetType.HANDSHAKE, 0)  # new ratchets: splits tree nodes
        raise RuntimeError("message rejected")
    assert tree.to_bytes() == before
    # The restored tree still behaves as before: the same keys come out.
    fresh = SecretTree(SUITE, b"\x0d" * 32, 8)
    assert tree.consume(6, RatchetType.HANDSHAKE, 0) == fresh.consume(6, RatchetType.HANDSHAKE, 0)
    assert tree.consume(5, RatchetType.APPLICATION, 2) == fresh.consume(
        5, RatchetType.APPLICATION, 2
    )


def test_transaction_keeps_changes_on_success_and_does_not_nest() -> None:
    tree = SecretTree(SUITE, b"\x0e" * 32, 4)
    with tree.transaction():
        key = tree.consume(3, RatchetType.APPLICATION, 0)
        with pytest.raises(SecretTreeError), tree.transaction():
            pass
        with pytest.raises(SecretTreeError):
            tree.copy()
    with pytest.raises(KeyReuseError):
        tree.consume(3, RatchetType.APPLICATION, 0)
    assert key.generation == 0
    # After a (failed) nested attempt and the outer block, transactions work again.
    with pytest.raises(KeyError), tree.transaction():
        tree.consume(3, RatchetType.APPLICATION, 1)
        raise KeyError("x")
    assert tree.consume(3, RatchetType.APPLICATION, 1).generation == 1


def test_copy_is_independent() -> None:
    tree = SecretTree(SUITE, b"\x0f" * 32, 4)
    tree.peek_key(1, RatchetType.APPLICATION, 3)
    copy = tree.copy()
    assert copy.to_bytes() == tree.to_bytes()
    copy.consume(1, RatchetType.APPLICATION, 3)
    copy.consume(2, RatchetType.HANDSHAKE, 0)
    assert copy.to_bytes() != tree.to_bytes()
    assert tree.consume(1, RatchetType.APPLICATION, 3).generation == 3
    assert tree.consume(2, RatchetType.HANDSHAKE, 0).generation == 0
