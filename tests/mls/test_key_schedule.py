"""key-schedule.json for all seven suites (every epoch), GroupContext codec, external init."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls.crypto import SUITES, get_suite
from mls.errors import DecodeError
from mls.group_context import GroupContext
from mls.key_schedule import (
    EpochSecrets,
    derive_epoch_secret,
    derive_joiner_secret,
    derive_welcome_secret,
    external_init_receiver,
    external_init_sender,
    key_schedule,
    key_schedule_from_joiner,
    mls_exporter,
    welcome_key_nonce,
)
from tests.vectors import case_id, load_vectors, vector_params

h = bytes.fromhex


VECTOR = "mls/key-schedule.json"


def _epochs(i: int, case: dict[str, Any]) -> list[tuple[str, tuple[int]]]:
    # Each epoch depends on the previous epoch's init_secret: each param replays up to it.
    return [(f"epoch{e}", (e,)) for e in range(len(case["epochs"]))]


EPOCHS = vector_params(VECTOR, case_id, suite_key="cipher_suite", variants=_epochs, width=2)


@pytest.mark.parametrize(("case", "upto"), EPOCHS)
def test_key_schedule_vector(case: dict[str, Any], upto: int) -> None:
    suite = get_suite(case["cipher_suite"])
    group_id = h(case["group_id"])
    init_secret = h(case["initial_init_secret"])
    for epoch, v in enumerate(case["epochs"][: upto + 1]):
        gc = GroupContext(
            cipher_suite=case["cipher_suite"],
            group_id=group_id,
            epoch=epoch,
            tree_hash=h(v["tree_hash"]),
            confirmed_transcript_hash=h(v["confirmed_transcript_hash"]),
        )
        assert gc.encode() == h(v["group_context"])
        assert GroupContext.decode(h(v["group_context"])) == gc
        res = key_schedule(suite, init_secret, h(v["commit_secret"]), h(v["psk_secret"]), gc)
        init_secret = res.epoch.init_secret
    s = res.epoch
    assert res.joiner_secret == h(v["joiner_secret"])
    assert res.welcome_secret == h(v["welcome_secret"])
    assert s.sender_data_secret == h(v["sender_data_secret"])
    assert s.encryption_secret == h(v["encryption_secret"])
    assert s.exporter_secret == h(v["exporter_secret"])
    assert s.epoch_authenticator == h(v["epoch_authenticator"])
    assert s.external_secret == h(v["external_secret"])
    assert s.confirmation_key == h(v["confirmation_key"])
    assert s.membership_key == h(v["membership_key"])
    assert s.resumption_psk == h(v["resumption_psk"])
    assert s.init_secret == h(v["init_secret"])
    assert s.external_pub == h(v["external_pub"])
    ex = v["exporter"]
    want = h(ex["secret"])
    # The vectors' exporter label is used as given: its hex text *is* the label string.
    label, context, length = ex["label"], h(ex["context"]), ex["length"]
    assert s.export(label, context, length) == want
    assert mls_exporter(suite, s.exporter_secret, label.encode(), context, length) == want
    assert s.export(h(label), context, length) != want

    # The piecewise functions and the joiner-side entry point agree with the full run.
    joiner = derive_joiner_secret(suite, _prev_init(case, upto), h(v["commit_secret"]), gc.encode())
    assert joiner == res.joiner_secret
    assert derive_welcome_secret(suite, joiner, h(v["psk_secret"])) == res.welcome_secret
    epoch_secret = derive_epoch_secret(suite, joiner, h(v["psk_secret"]), gc)
    assert EpochSecrets.derive(suite, epoch_secret) == s
    assert key_schedule_from_joiner(suite, joiner, h(v["psk_secret"]), gc) == res


def _prev_init(case: dict[str, Any], epoch: int) -> bytes:
    if epoch == 0:
        return h(case["initial_init_secret"])
    return h(case["epochs"][epoch - 1]["init_secret"])


def test_vector_counts() -> None:
    cases = load_vectors(VECTOR)
    assert [c["cipher_suite"] for c in cases] == sorted(SUITES) == [1, 2, 3, 4, 5, 6, 7]
    assert all(len(c["epochs"]) == 5 for c in cases)


@pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_zero_defaults_and_welcome_key(suite_id: int) -> None:
    suite = get_suite(suite_id)
    nh = suite.nh
    gc = GroupContext(suite_id, b"g", 0, b"t" * nh, b"")
    init = b"\x01" * nh
    a = key_schedule(suite, init, None, None, gc)
    b = key_schedule(suite, init, bytes(nh), bytes(nh), gc.encode())
    assert a == b
    c = key_schedule(suite, init, b"\x02" * nh, None, gc)
    assert c.joiner_secret != a.joiner_secret
    key, nonce = welcome_key_nonce(suite, a.welcome_secret)
    assert (len(key), len(nonce)) == (suite.nk, suite.nn)
    assert a.epoch.confirmation_tag(b"x") == suite.mac(a.epoch.confirmation_key, b"x")
    text = repr(a)
    for secret in (a.joiner_secret, a.welcome_secret, a.epoch.init_secret, a.epoch.exporter_secret):
        assert secret.hex() not in text


@pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")
def test_external_init_round_trip(suite_id: int) -> None:
    suite = get_suite(suite_id)
    gc = GroupContext(suite_id, b"g", 3, b"t" * 32, b"c" * 32)
    epoch = key_schedule(suite, b"\x05" * 32, None, None, gc).epoch
    priv, pub = epoch.external_key_pair()
    kem_output, init_secret = external_init_sender(suite, pub, rng=os.urandom)
    assert len(init_secret) == suite.nh
    assert external_init_receiver(suite, priv, kem_output) == init_secret
    _, other = external_init_sender(suite, pub, rng=os.urandom)
    assert other != init_secret


# -- GroupContext codec ---------------------------------------------------------------------

_gc = st.builds(
    GroupContext,
    cipher_suite=st.integers(0, 0xFFFF),
    group_id=st.binary(max_size=40),
    epoch=st.integers(0, 2**64 - 1),
    tree_hash=st.binary(max_size=64),
    confirmed_transcript_hash=st.binary(max_size=64),
    extensions=st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=20), max_size=4).map(
        lambda d: tuple(d.items())
    ),
)


@settings(max_examples=200, deadline=None)
@given(_gc)
def test_group_context_round_trip(gc: GroupContext) -> None:
    data = gc.encode()
    assert GroupContext.decode(data) == gc
    assert GroupContext.from_bytes(gc.to_bytes()) == gc
    with pytest.raises(DecodeError):
        GroupContext.decode(data + b"\x00")
    with pytest.raises(DecodeError):
        GroupContext.decode(data[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_group_context_decode_random(data: bytes) -> None:
    try:
        gc = GroupContext.decode(data)
    except DecodeError:
        return
    assert gc.encode() == data


def test_group_context_rejects_bad_input() -> None:
    good = GroupContext(1, b"g", 1, b"t", b"c", ((1, b"a"),))
    data = good.encode()
    with pytest.raises(DecodeError):
        GroupContext.decode(b"\x00\x02" + data[2:])  # unknown version
    dup = GroupContext(1, b"g", 1, b"t", b"c", ((1, b"a"), (1, b"b"))).encode()
    with pytest.raises(DecodeError):
        GroupContext.decode(dup)
    long_hash = GroupContext(1, b"g", 1, b"t" * 65, b"c").encode()
    with pytest.raises(DecodeError):
        GroupContext.decode(long_hash)
    nxt = good.next_epoch(tree_hash=b"T", confirmed_transcript_hash=b"C")
    assert (nxt.epoch, nxt.extensions, nxt.group_id) == (2, good.extensions, b"g")
