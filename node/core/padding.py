"""The sealed-envelope size rule (PROTOCOL.md section 11), for layers that must not import
``node.channels``.

Relays and mailboxes (``node.network``) refuse any envelope whose length the channel layer
could not have produced. This is the same rule as ``node.channels.envelope``: the fixed
buckets 512, 2048, 8192, 32768, then Padmé lengths up to :data:`MAX_ENVELOPE`. A test holds
both implementations to the same answer for every length.
"""

from __future__ import annotations

__all__ = ["BUCKETS", "MAX_ENVELOPE", "is_envelope_size", "padme"]

BUCKETS = (512, 2048, 8192, 32768)
# Fits one chunked transport payload (1 MiB) with room for a layer's own framing.
MAX_ENVELOPE = (1 << 20) - 4096


def padme(length: int) -> int:
    """Padmé (Nikitin et al., PETS 2019): round up so at most O(log log L) bits leak."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def is_envelope_size(length: int) -> bool:
    """True for exactly the lengths a sealed envelope can have."""
    if length in BUCKETS:
        return True
    return BUCKETS[-1] < length <= MAX_ENVELOPE and padme(length) == length
