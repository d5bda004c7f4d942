"""Seed corpus for the fuzz targets: valid encodings, built deterministically from fixed keys.

``python -m fuzz.seeds [DIR]`` writes every target's seeds to ``DIR/<target>/`` (default
``fuzz/corpus``); the smoke test calls :func:`fuzz.targets.corpus` directly. Nothing binary
is committed.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from fuzz.keys import ENVELOPE_KEY, INVITE_PUBLIC_KEY
from node.channels import envelope
from node.channels.check import EpochCheck, Readd, ReaddKey
from node.channels.content import (
    AppHeader,
    ChannelInfo,
    CommitHeader,
    Intent,
    IntentOp,
    Profile,
    Text,
)
from node.channels.manager import Invite, InviteState
from node.channels.state import (
    ChannelMeta,
    ChannelStatus,
    EpochNode,
    PendingCommit,
    PendingIntent,
    SentMessage,
)
from node.channels.wire import (
    GroupMessage,
    InviteAnswer,
    InviteOffer,
    WelcomeMessage,
    Withdrawal,
)
from node.core.identity import Identity
from node.network.wire import AckMsg, EnvelopeMsg

__all__ = ["valid_encodings"]

ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(1, 33)))
CAROL = Identity.from_seed(bytes(range(2, 34)))
A, B, C = ALICE.peer_id, BOB.peer_id, CAROL.peer_id
ID = bytes(range(16))
T = 1_800_000_000.5


def _rng(seed: int):  # type: ignore[no-untyped-def]
    return random.Random(seed).randbytes


def _payloads() -> list[bytes]:
    return [
        GroupMessage(b"\x00\x01" + bytes(40)).encode(),
        InviteOffer(ID, bytes(32), "garden", A, bytes(32), B).signed(ALICE).encode(),
        InviteAnswer(ID, B, A, b"key package").signed(BOB).encode(),
        InviteAnswer(ID, B, A, b"").signed(BOB).encode(),
        WelcomeMessage(ID, b"welcome", A, bytes(32), 2, tuple(sorted((B, C)))).encode(),
        Withdrawal(ID, bytes(32), bytes(32), A, B).signed(ALICE).encode(),
    ]


def _contents() -> list[bytes]:
    return [
        Text(ID, "hello \U0001f43c", 1_800_000_000_000).encode(),
        Profile("Alice").encode(),
        Intent(ID, IntentOp.ADD, B, b"kp", bytes(16), bytes(32)).encode(),
        Intent(ID, IntentOp.REMOVE, B).encode(),
        Intent(ID, IntentOp.ADMIN, C).encode(),
        Intent(ID, IntentOp.LEAVE).encode(),
    ]


def _state() -> tuple[list[bytes], list[bytes]]:
    root = EpochNode(bytes(16), 0, None, b"", None, 0, frozenset(), frozenset(), b"\x00")
    node = EpochNode(ID, 7, bytes(16), bytes(32), A, 2, frozenset({B, C}),
                     frozenset({bytes(16), ID}), b"group state", ((ID, B, bytes(32)),))
    meta = ChannelMeta(
        status=ChannelStatus.ACTIVE, my_seq=3, sender_seq={A: 1, B: 2}, profiles={A: "A"},
        intents={ID: PendingIntent(b"intent", B, T)},
        pending_commit=PendingCommit(ID, bytes(32), T, frozenset({B}), frozenset(), None,
                                     ((ID, C, bytes(32)),), 1, frozenset({C})),
        last_commit_at=T, display_name="me", profile_epoch=2,
    )
    return [root.encode(), node.encode()], [ChannelMeta().encode(), meta.encode()]


def _sent() -> list[bytes]:
    return [SentMessage(bytes(16), 1, b"content", ID).encode(),
            SentMessage(ID, (1 << 64) - 1, b"x", bytes(16)).encode()]


def _envelopes() -> tuple[list[bytes], list[bytes]]:
    tag = envelope.routing_tag(bytes(32), 500_000)
    channel = [envelope.seal_channel_envelope(ENVELOPE_KEY, tag, p, rng=_rng(i))
               for i, p in enumerate((b"", GroupMessage(b"m").encode(), bytes(600)))]
    invite = [envelope.seal_invite_envelope(INVITE_PUBLIC_KEY, p, rng=_rng(10 + i))
              for i, p in enumerate((b"", _payloads()[1]))]
    return channel, invite


def valid_encodings() -> dict[str, list[bytes]]:
    """Valid inputs for each decoder target, by target name."""
    nodes, metas = _state()
    channel, invite = _envelopes()
    out = {
        "decode_payload": _payloads(),
        "decode_content": _contents(),
        "app_header": [AppHeader(1).encode(), AppHeader(1 << 40).encode()],
        "commit_header": [CommitHeader().encode(), CommitHeader((ID, bytes(16))).encode()],
        "channel_info": [ChannelInfo("garden", (A,)).encode(),
                         ChannelInfo("g", tuple(sorted((A, B, C)))).encode()],
        "epoch_node": nodes,
        "channel_meta": metas,
        "sent_message": _sent(),
        "decode_net": [EnvelopeMsg(channel[0]).encode(), AckMsg((bytes(20), ID + bytes(4))
                                                                 ).encode()],
        "envelope_split": channel[:1] + invite[:1],
        "envelope_open_channel": channel,
        "envelope_open_invite": invite,
        "envelope_unpad": [b"\x00\x00\x00\x05hello", b"\x00\x00\x00\x00", b"\x00\x00\x01\xbb",
                           b"\x00\x00\x00\x01x\x00\x01"],
        "check_message": [EpochCheck(bytes(32), 7, bytes(8)).encode(), Readd(ID * 2).encode(),
                          ReaddKey(bytes(32), ID, b"key package", bytes(32)).encode()],
        "stored_invite": [
            Invite(ID, bytes(32), "garden", A, bytes(32), InviteState.PENDING, T).encode(),
            Invite(ID, bytes(32), "g", B, bytes(32), InviteState.JOINED, T, bytes(32),
                   b"bundle", T + 1, readd=True).encode(),
        ],
    }
    return out


def main(argv: list[str]) -> int:
    from fuzz.targets import corpus

    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "corpus"
    for name, items in corpus().items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for data in items:
            (d / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)
        print(f"{d}: {len(items)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
