"""Structure-aware mutation: the fuzzer's bytes read as a stream of choices that replace
values inside a valid (decoded) CBOR seed with arbitrary values of the canonical subset.

Shared by every ``structured_*`` target (channel, transport, DHT record).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Stream", "perturb", "value"]


class Stream:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        self.pos += 1
        return self.data[self.pos - 1] if self.pos <= len(self.data) else 0

    def take(self, n: int) -> bytes:
        self.pos += n
        return self.data[self.pos - n : self.pos]


_KEYS = ("v", "t", "mls", "invite", "from", "to", "sig", "name", "admins", "seq", "done",
         "id", "op", "env", "ids", "x",
         # transport messages, the handshake payload, DHT peer records
         "nonce", "code", "reason", "protocol", "payload", "total", "identity_key", "signature",
         "listen_addrs", "addrs", "key", "noise", "peer", "exp")
# Text values that mean something to some decoder (protocol names, multiaddrs).
_TEXTS = ("sp/env/1", "dht", "/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/1", "/dns4/a.b/tcp/9",
          "/ip4/0.0.0.0/tcp/4001", "/ip4/127.0.0.1/tcp/0", "/ip4/1.2.3.4/udp/1", "")
_SIZES = (0, 1, 15, 16, 17, 19, 20, 21, 31, 32, 33, 34, 35, 63, 64, 65)


def value(s: Stream, depth: int = 0) -> Any:
    """An arbitrary value of the canonical CBOR subset, driven by the stream."""
    kind, arg = s.byte(), s.byte()
    choice = kind % (9 if depth < 2 else 6)
    if choice == 0:
        return (None, True, False)[arg % 3]
    if choice == 1:
        return arg - 24  # small ints around 0
    if choice == 2:
        raw = int.from_bytes(s.take(8).ljust(8, b"\0"), "big")
        return raw if arg & 1 else -1 - raw  # the full 64-bit range, both signs
    if choice == 3:
        size = _SIZES[arg % len(_SIZES)]
        if kind & 0x80 and size == 34:
            return b"\x01\xed" + s.take(32).ljust(32, b"\0")  # a well-formed PeerId
        return s.take(size).ljust(size, b"\0")
    if choice == 4:
        return s.take(arg % 24).decode("utf-8", "replace")
    if choice == 5:
        return _KEYS[arg % len(_KEYS)] if kind & 0x80 else _TEXTS[arg % len(_TEXTS)]
    if choice in (6, 7):
        return [value(s, depth + 1) for _ in range(arg % 5)]
    return {_KEYS[s.byte() % len(_KEYS)]: value(s, depth + 1) for _ in range(arg % 3)}


def perturb(obj: Any, s: Stream) -> Any:
    """A changed copy of ``obj`` (containers are rebuilt, never modified in place)."""
    if isinstance(obj, dict):
        obj = dict(obj)
    for _ in range(1 + s.byte() % 3):
        if isinstance(obj, dict) and obj:
            key = sorted(obj, key=str)[s.byte() % len(obj)]
            inner = obj[key]
            if isinstance(inner, list) and inner and s.byte() & 1:
                i = s.byte() % len(inner)
                obj[key] = [*inner[:i], value(s), *inner[i + 1 :]]
            else:
                obj[key] = value(s)
        elif isinstance(obj, list) and obj:
            i = s.byte() % len(obj)
            obj = [*obj[:i], value(s), *obj[i + 1 :]]
        else:
            obj = value(s)
    return obj
