"""The envelope size rule copied into node.core (node/core/padding.py) is the channel layer's."""

from __future__ import annotations

from node.channels import envelope as channel_envelope
from node.core import padding


def test_constants_are_the_channel_layers() -> None:
    assert padding.BUCKETS == channel_envelope.BUCKETS == (512, 2048, 8192, 32768)
    assert padding.MAX_ENVELOPE == channel_envelope.MAX_ENVELOPE


def test_every_length_gets_the_same_answer() -> None:
    ours, theirs = padding.is_envelope_size, channel_envelope.is_envelope_size
    for n in range(padding.MAX_ENVELOPE + 2):
        assert ours(n) == theirs(n), n


def test_padme_is_the_channel_layers() -> None:
    for n in [*range(0, 70_000, 7), *range(padding.MAX_ENVELOPE - 5000, padding.MAX_ENVELOPE)]:
        assert padding.padme(n) == channel_envelope.padme(n)


def test_known_sizes() -> None:
    ok = [512, 2048, 8192, 32768, 34816, 1_032_192]  # the largest below MAX_ENVELOPE
    assert all(padding.is_envelope_size(n) for n in ok)
    bad = [0, 1, 511, 513, 1024, 32769, 34817, padding.MAX_ENVELOPE, 1 << 20]
    assert not any(padding.is_envelope_size(n) for n in bad)
