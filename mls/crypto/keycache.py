"""A small LRU of parsed key objects keyed by their raw bytes.

Parsing a key often costs as much as using it (an Ed25519 or NIST private key derives its
public key, a NIST public key is checked to be on the curve), so the handful of keys a member
signs, verifies and decrypts with are kept parsed. Bounded, so a flood of distinct keys cannot
grow memory.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["KeyCache"]


class KeyCache:
    __slots__ = ("_items", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, object] = OrderedDict()

    def __repr__(self) -> str:
        return f"KeyCache({len(self._items)}/{self._size})"  # never the keys

    def get(self, raw: bytes) -> object | None:
        items = self._items
        obj = items.get(raw)
        if obj is not None:
            try:
                items.move_to_end(raw)
            except KeyError:  # evicted by another thread meanwhile: a miss is harmless
                return None
        return obj

    def put(self, raw: bytes, obj: object) -> None:
        items = self._items
        items[raw] = obj
        if len(items) > self._size:
            items.popitem(last=False)
