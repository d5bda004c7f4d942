"""What an opened envelope carries (PROTOCOL.md section 10.3).

* :class:`GroupMessage`: an MLS ``MLSMessage`` (PrivateMessage) of a channel, inside a
  channel envelope.
* :class:`InviteOffer`, :class:`InviteAnswer`, :class:`WelcomeMessage`: the invitation
  exchange, each inside an invite envelope sealed to one node. Offers and answers are signed
  by the sender's identity key (HPKE base mode does not authenticate the sender), and each
  names both parties so it cannot be replayed to a third node.

Decoding gives the structure; :meth:`InviteOffer.verify` / :meth:`InviteAnswer.verify` check
the signature against the PeerId the message claims, using only the PeerId itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from node.channels.codec import (
    decode_map,
    encode_map,
    get_bytes,
    get_int,
    get_peer,
    get_text,
)
from node.channels.envelope import MAX_PAYLOAD
from node.channels.errors import PayloadError
from node.core import cbor
from node.core.identity import Identity, PeerId

__all__ = [
    "COVER_PREFIX",
    "INVITE_ID_LEN",
    "MAX_GROUP_MESSAGE",
    "MAX_NAME_BYTES",
    "Cover",
    "GroupMessage",
    "InviteAnswer",
    "InviteOffer",
    "Payload",
    "WelcomeMessage",
    "Withdrawal",
    "decode_payload",
]

INVITE_ID_LEN = 16
CHANNEL_ID_LEN = 32
MAX_NAME_BYTES = 128
# An MLS message of a channel (a Welcome or commit of a few thousand members at most): what
# one envelope can carry after the one-byte GroupMessage prefix.
MAX_GROUP_MESSAGE = MAX_PAYLOAD - 1
MAX_KEY_PACKAGE = 16 * 1024
_OFFER_DOMAIN = b"spacepanda/v1/invite-offer"
_ANSWER_DOMAIN = b"spacepanda/v1/invite-answer"

_T_GROUP, _T_OFFER, _T_ANSWER, _T_WELCOME, _T_WITHDRAWAL = 1, 2, 3, 4, 5
_GROUP_PREFIX = b"\x01"
# A cover payload (jitter mode "high"): 0x02 and random bytes; members drop it unread.
COVER_PREFIX = b"\x02"
_WITHDRAWAL_DOMAIN = b"spacepanda/v1/welcome-withdrawal"
_MAX_REMOVED = 1024


@dataclass(frozen=True)
class GroupMessage:
    """``0x01 || MLSMessage``: the one payload of channel envelopes, kept binary (it is on
    every message's path). The invitation kinds are canonical CBOR maps, whose first byte
    (0xa0..0xbf) cannot be 0x01."""

    mls: bytes
    KIND: ClassVar[int] = _T_GROUP

    def encode(self) -> bytes:
        return _GROUP_PREFIX + self.mls


@dataclass(frozen=True)
class InviteOffer:
    """An admin asks ``invitee`` to join ``channel_id`` (named ``name``)."""

    invite_id: bytes
    channel_id: bytes
    name: str
    inviter: PeerId
    inviter_key: bytes  # the inviter's X25519 envelope key: where the answer is sealed to
    invitee: PeerId
    signature: bytes = b""
    KIND: ClassVar[int] = _T_OFFER

    def _body(self) -> dict[str, Any]:
        return {
            "invite": self.invite_id,
            "channel": self.channel_id,
            "name": self.name,
            "from": self.inviter.binary,
            "from_key": self.inviter_key,
            "to": self.invitee.binary,
        }

    def signed(self, identity: Identity) -> InviteOffer:
        sig = identity.sign(_OFFER_DOMAIN + cbor.encode(self._body()))
        return InviteOffer(**{**self.__dict__, "signature": sig})

    def verify(self, me: PeerId) -> None:
        if self.invitee != me:
            raise PayloadError("invite offer is addressed to another node")
        if not self.inviter.verify(self.signature, _OFFER_DOMAIN + cbor.encode(self._body())):
            raise PayloadError("invite offer signature does not verify")

    def encode(self) -> bytes:
        return encode_map(self.KIND, {**self._body(), "sig": self.signature})


@dataclass(frozen=True)
class InviteAnswer:
    """The invitee's consent (with a fresh KeyPackage) or refusal (empty key_package)."""

    invite_id: bytes
    invitee: PeerId
    inviter: PeerId
    key_package: bytes
    signature: bytes = b""
    KIND: ClassVar[int] = _T_ANSWER

    @property
    def accepted(self) -> bool:
        return bool(self.key_package)

    def _body(self) -> dict[str, Any]:
        return {
            "invite": self.invite_id,
            "from": self.invitee.binary,
            "to": self.inviter.binary,
            "kp": self.key_package,
        }

    def signed(self, identity: Identity) -> InviteAnswer:
        sig = identity.sign(_ANSWER_DOMAIN + cbor.encode(self._body()))
        return InviteAnswer(**{**self.__dict__, "signature": sig})

    def verify(self, me: PeerId) -> None:
        if self.inviter != me:
            raise PayloadError("invite answer is addressed to another node")
        if not self.invitee.verify(self.signature, _ANSWER_DOMAIN + cbor.encode(self._body())):
            raise PayloadError("invite answer signature does not verify")

    def encode(self) -> bytes:
        return encode_map(self.KIND, {**self._body(), "sig": self.signature})


@dataclass(frozen=True)
class WelcomeMessage:
    """The MLS Welcome for an accepted invite (self-authenticating: signed GroupInfo), with
    what the no-fork rule compares of the commit it comes from (``commit_hash``, the
    committer's ``slot``, whom the commit ``removed``)."""

    invite_id: bytes
    welcome: bytes
    committer: PeerId
    commit_hash: bytes
    slot: int
    removed: tuple[PeerId, ...]
    KIND: ClassVar[int] = _T_WELCOME

    def encode(self) -> bytes:
        return encode_map(
            self.KIND,
            {
                "invite": self.invite_id,
                "welcome": self.welcome,
                "from": self.committer.binary,
                "commit": self.commit_hash,
                "slot": self.slot,
                "removed": sorted(p.binary for p in self.removed),
            },
        )


@dataclass(frozen=True)
class Withdrawal:
    """An admin's notice that the commit that added us lost the branch choice: drop the
    state joined from it. Signed by the admin, naming the joiner."""

    invite_id: bytes
    channel_id: bytes
    commit_hash: bytes
    admin: PeerId
    joiner: PeerId
    signature: bytes = b""
    KIND: ClassVar[int] = _T_WITHDRAWAL

    def _body(self) -> dict[str, Any]:
        return {
            "invite": self.invite_id,
            "channel": self.channel_id,
            "commit": self.commit_hash,
            "from": self.admin.binary,
            "to": self.joiner.binary,
        }

    def signed(self, identity: Identity) -> Withdrawal:
        sig = identity.sign(_WITHDRAWAL_DOMAIN + cbor.encode(self._body()))
        return Withdrawal(**{**self.__dict__, "signature": sig})

    def verify(self, me: PeerId) -> None:
        if self.joiner != me:
            raise PayloadError("withdrawal is addressed to another node")
        if not self.admin.verify(self.signature, _WITHDRAWAL_DOMAIN + cbor.encode(self._body())):
            raise PayloadError("withdrawal signature does not verify")

    def encode(self) -> bytes:
        return encode_map(self.KIND, {**self._body(), "sig": self.signature})


@dataclass(frozen=True)
class Cover:
    """Cover traffic (jitter mode "high"): random bytes that members drop unread."""

    padding: bytes

    def encode(self) -> bytes:
        return COVER_PREFIX + self.padding


Payload = GroupMessage | InviteOffer | InviteAnswer | WelcomeMessage | Withdrawal | Cover

_LAYOUTS = {
    _T_OFFER: frozenset({"invite", "channel", "name", "from", "from_key", "to", "sig"}),
    _T_ANSWER: frozenset({"invite", "from", "to", "kp", "sig"}),
    _T_WELCOME: frozenset({"invite", "welcome", "from", "commit", "slot", "removed"}),
    _T_WITHDRAWAL: frozenset({"invite", "channel", "commit", "from", "to", "sig"}),
}


def decode_payload(data: bytes) -> Payload:
    """Decode an opened envelope's payload. Raises PayloadError."""
    if not isinstance(data, bytes):
        raise PayloadError("envelope payload must be bytes")
    if data[:1] == _GROUP_PREFIX:
        if not 2 <= len(data) <= MAX_GROUP_MESSAGE + 1:
            raise PayloadError("group message of a bad length")
        return GroupMessage(data[1:])
    if data[:1] == COVER_PREFIX:
        if len(data) > MAX_GROUP_MESSAGE + 1:
            raise PayloadError("cover payload too long")
        return Cover(data[1:])
    kind, f = decode_map(data, "envelope payload", _LAYOUTS,
                         max_size=MAX_GROUP_MESSAGE + 40 * _MAX_REMOVED + 256,
                         max_items=32 + _MAX_REMOVED, max_depth=2)
    if kind == _T_OFFER:
        return InviteOffer(
            get_bytes(f, "invite", INVITE_ID_LEN, INVITE_ID_LEN),
            get_bytes(f, "channel", CHANNEL_ID_LEN, CHANNEL_ID_LEN),
            get_text(f, "name", MAX_NAME_BYTES),
            get_peer(f, "from"),
            get_bytes(f, "from_key", 32, 32),
            get_peer(f, "to"),
            get_bytes(f, "sig", 64, 64),
        )
    if kind == _T_ANSWER:
        return InviteAnswer(
            get_bytes(f, "invite", INVITE_ID_LEN, INVITE_ID_LEN),
            get_peer(f, "from"),
            get_peer(f, "to"),
            get_bytes(f, "kp", 0, MAX_KEY_PACKAGE),
            get_bytes(f, "sig", 64, 64),
        )
    if kind == _T_WELCOME:
        removed = f["removed"]
        if not isinstance(removed, list) or len(removed) > _MAX_REMOVED:
            raise PayloadError("welcome: removed must be a list of PeerIds")
        if not all(isinstance(p, bytes) for p in removed) or removed != sorted(set(removed)):
            raise PayloadError("welcome: removed must be sorted, unique binary PeerIds")
        return WelcomeMessage(
            get_bytes(f, "invite", INVITE_ID_LEN, INVITE_ID_LEN),
            get_bytes(f, "welcome", 1, MAX_GROUP_MESSAGE),
            get_peer(f, "from"),
            get_bytes(f, "commit", 32, 32),
            get_int(f, "slot", 0, 1 << 16),
            tuple(get_peer({"p": p}, "p") for p in removed),
        )
    return Withdrawal(
        get_bytes(f, "invite", INVITE_ID_LEN, INVITE_ID_LEN),
        get_bytes(f, "channel", CHANNEL_ID_LEN, CHANNEL_ID_LEN),
        get_bytes(f, "commit", 32, 32),
        get_peer(f, "from"),
        get_peer(f, "to"),
        get_bytes(f, "sig", 64, 64),
    )
