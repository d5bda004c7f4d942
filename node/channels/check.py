"""Fork detection and repair between a member and an admin, over their link (PROTOCOL 12.7).

Data protocol ``sp/check/1``; the Noise link authenticates both ends, so these carry no
signature. Canonical CBOR maps:

* ``EpochCheck {"v": 1, "t": 1, "channel", "epoch", "fp"}``: member -> admin, now and then:
  the epoch and the first 8 bytes of the epoch authenticator the member is at.
* ``Readd {"v": 1, "t": 2, "channel"}``: admin -> member: "you are on a state I do not know
  (a fork, or too far behind): send a fresh KeyPackage".
* ``ReaddKey {"v": 1, "t": 3, "channel", "invite", "kp", "key"}``: member -> admin: the
  KeyPackage, an id for the Welcome, and the member's envelope key to seal the Welcome to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from node.channels.codec import decode_map, encode_map, get_bytes, get_int

__all__ = ["PROTOCOL", "EpochCheck", "Readd", "ReaddKey", "decode_check"]

PROTOCOL = "sp/check/1"
_T_CHECK, _T_READD, _T_KEY = 1, 2, 3
_UINT63 = (1 << 63) - 1


@dataclass(frozen=True)
class EpochCheck:
    channel_id: bytes
    epoch: int
    fingerprint: bytes
    KIND: ClassVar[int] = _T_CHECK

    def encode(self) -> bytes:
        return encode_map(self.KIND, {"channel": self.channel_id, "epoch": self.epoch,
                                      "fp": self.fingerprint})


@dataclass(frozen=True)
class Readd:
    channel_id: bytes
    KIND: ClassVar[int] = _T_READD

    def encode(self) -> bytes:
        return encode_map(self.KIND, {"channel": self.channel_id})


@dataclass(frozen=True)
class ReaddKey:
    channel_id: bytes
    invite_id: bytes
    key_package: bytes
    envelope_key: bytes
    KIND: ClassVar[int] = _T_KEY

    def encode(self) -> bytes:
        return encode_map(self.KIND, {"channel": self.channel_id, "invite": self.invite_id,
                                      "kp": self.key_package, "key": self.envelope_key})


CheckMessage = EpochCheck | Readd | ReaddKey

_LAYOUTS = {
    _T_CHECK: frozenset({"channel", "epoch", "fp"}),
    _T_READD: frozenset({"channel"}),
    _T_KEY: frozenset({"channel", "invite", "kp", "key"}),
}


def decode_check(data: bytes) -> CheckMessage:
    """Raises PayloadError."""
    kind, f = decode_map(data, "check message", _LAYOUTS, max_size=20 * 1024, max_items=16,
                         max_depth=1)
    channel = get_bytes(f, "channel", 32, 32)
    if kind == _T_CHECK:
        return EpochCheck(channel, get_int(f, "epoch", 0, _UINT63), get_bytes(f, "fp", 8, 8))
    if kind == _T_READD:
        return Readd(channel)
    return ReaddKey(channel, get_bytes(f, "invite", 16, 16), get_bytes(f, "kp", 1, 16 * 1024),
                    get_bytes(f, "key", 32, 32))
