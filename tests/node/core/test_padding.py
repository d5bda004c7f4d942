"""The sealed-envelope size rule (node/core/padding.py), which the channel layer pads by and
relays and mailboxes check."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.core import padding
from tests.node.channels.strategies import prop


def test_known_sizes() -> None:
    ok = [512, 2048, 8192, 32768, 34816, 1_032_192]  # the largest below MAX_ENVELOPE
    assert all(padding.is_envelope_size(n) for n in ok)
    bad = [0, 1, 511, 513, 1024, 32769, 34817, padding.MAX_ENVELOPE, 1 << 20]
    assert not any(padding.is_envelope_size(n) for n in bad)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0), (1, 1), (2, 2), (3, 3), (8, 8), (9, 10), (32769, 34816), (40000, 40960),
     (65536, 65536), (65537, 67584), (1_000_000, 1_015_808)],
)
def test_padme_known_values(length: int, expected: int) -> None:
    assert padding.padme(length) == expected


@prop(300)
@given(st.integers(2, 1 << 24))
def test_padme_rounds_up_by_less_than_a_sixteenth_and_is_idempotent(length: int) -> None:
    p = padding.padme(length)
    assert length <= p < length + max(2, length // 8)
    assert padding.padme(p) == p
    # Padmé leaks O(log log L) bits: the kept mantissa has at most bit_length(e) + 1 bits.
    e = length.bit_length() - 1
    assert p >> (e - e.bit_length()) << (e - e.bit_length()) == p


def test_envelope_size_is_the_smallest_bucket_then_padme() -> None:
    assert padding.envelope_size(0) == 512
    for lo, hi in itertools.pairwise((0, *padding.BUCKETS)):
        assert padding.envelope_size(hi) == hi
        assert padding.envelope_size(lo + 1) == hi
    assert padding.envelope_size(32769) == padding.padme(32769) == 34816


def test_is_envelope_size_is_exactly_the_image_of_envelope_size() -> None:
    produced = {padding.envelope_size(n) for n in range(0, 140_000)}
    for length in range(0, 140_000):
        assert padding.is_envelope_size(length) == (length in produced), length
    assert padding.is_envelope_size(padding.padme(padding.MAX_ENVELOPE - 70_000))
    assert not padding.is_envelope_size(padding.MAX_ENVELOPE + 1)
    # The largest Padmé size above the cap is refused even though padme() maps it to itself.
    above = padding.padme(padding.MAX_ENVELOPE + 1)
    assert padding.padme(above) == above and not padding.is_envelope_size(above)
