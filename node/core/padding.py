"""The sealed-envelope size rule (PROTOCOL.md section 11): the fixed buckets 512, 2048, 8192,
32768, then Padmé lengths up to :data:`MAX_ENVELOPE`.

It lives in ``node.core`` so that both sides use the one rule: the channel layer
(``node.channels.envelope``) pads to :func:`envelope_size`, and relays and mailboxes
(``node.network``, which must not import ``node.channels``) refuse any length
:func:`is_envelope_size` says the channel layer could not have produced.
"""

from __future__ import annotations

__all__ = ["BUCKETS", "MAX_ENVELOPE", "envelope_size", "is_envelope_size", "padme"]

BUCKETS = (512, 2048, 8192, 32768)
# Fits one chunked transport payload (1 MiB) with room for the NetworkLayer's framing.
MAX_ENVELOPE = (1 << 20) - 4096


def padme(length: int) -> int:
    """Padmé (Nikitin et al., PETS 2019): round up so at most O(log log L) bits leak."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def envelope_size(minimal: int) -> int:
    """The padded envelope length for an envelope that needs ``minimal`` bytes."""
    for bucket in BUCKETS:
        if minimal <= bucket:
            return bucket
    return padme(minimal)


def is_envelope_size(length: int) -> bool:
    """True for exactly the lengths :func:`envelope_size` produces (and within the cap)."""
    if length in BUCKETS:
        return True
    return BUCKETS[-1] < length <= MAX_ENVELOPE and padme(length) == length
