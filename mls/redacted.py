"""``SecretBytes``: bytes that never show their value in ``repr``/``str``/f-strings.

Storage encodings that hold private keys are returned as ``SecretBytes`` so that logging a
dict of them, or an exception message built from one, prints a length and not the keys.
They are ordinary ``bytes`` otherwise (comparison, slicing, writing to storage).
"""

from __future__ import annotations

__all__ = ["SecretBytes"]


class SecretBytes(bytes):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretBytes(<{len(self)} bytes redacted>)"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)
