"""Hypothesis strategies and shared helpers for the channel-layer decoder tests.

Every property test here runs derandomized (a fixed seed per test) and without the example
database, so a run is reproducible and an ``xfail(strict=True)`` stays stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from node.channels.content import (
    AppHeader,
    ChannelInfo,
    CommitHeader,
    Intent,
    IntentOp,
    Profile,
    Text,
)
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
from node.core.ed25519 import is_strict_public_key
from node.core.identity import Identity, PeerId

UINT63 = (1 << 63) - 1


def prop(max_examples: int = 150, *, shrink: bool = True) -> Callable[[Any], Any]:
    """Settings for every property test in these files: deterministic and quick.
    ``shrink=False`` for a property that is known to fail today (an xfail): no time is spent
    minimising a counterexample nobody reads."""
    return settings(
        max_examples=max_examples,
        phases=tuple(Phase) if shrink else (Phase.explicit, Phase.generate),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Real identities (the signed structures need private keys); seeds fixed.
ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(1, 33)))
CAROL = Identity.from_seed(bytes(range(2, 34)))

# -- primitives -----------------------------------------------------------------------------

# Strict keys only: a small-order or non-canonical key makes no PeerId (PROTOCOL.md 2.3).
peers = st.binary(min_size=32, max_size=32).filter(is_strict_public_key).map(PeerId.from_public_key)
id16 = st.binary(min_size=16, max_size=16)
id32 = st.binary(min_size=32, max_size=32)
sig64 = st.binary(min_size=64, max_size=64)
# Valid UTF-8 text only (no lone surrogates): what a CBOR text string can carry.
_chars = st.characters(codec="utf-8")


def texts(max_bytes: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Text of at most ``max_bytes`` UTF-8 bytes (a char is at most 4)."""
    return st.text(_chars, min_size=min_size, max_size=max_bytes // 4)


def sorted_peers(min_size: int = 0, max_size: int = 4) -> st.SearchStrategy[tuple[PeerId, ...]]:
    return st.lists(peers, min_size=min_size, max_size=max_size, unique=True).map(
        lambda ps: tuple(sorted(ps))
    )


# -- wire.py payloads -----------------------------------------------------------------------

group_messages = st.builds(GroupMessage, st.binary(min_size=1, max_size=600))
offers = st.builds(InviteOffer, id16, id32, texts(128), peers, id32, peers, sig64)
answers = st.builds(InviteAnswer, id16, peers, peers, st.binary(max_size=600), sig64)
# ``removed`` sorted and unique: the form encode() produces (see the canonical-form xfail).
welcomes = st.builds(WelcomeMessage, id16, st.binary(min_size=1, max_size=600), peers, id32,
                     st.integers(0, 1 << 16), sorted_peers())
withdrawals = st.builds(Withdrawal, id16, id32, id32, peers, peers, sig64)
payloads = st.one_of(group_messages, offers, answers, welcomes, withdrawals)

# -- content.py -----------------------------------------------------------------------------

text_contents = st.builds(Text, id16, texts(2000), st.integers(0, UINT63))
profiles = st.builds(Profile, texts(64))


@st.composite
def intents(draw: st.DrawFn) -> Intent:
    op = draw(st.sampled_from(list(IntentOp)))
    target = None if op == IntentOp.LEAVE else draw(peers)
    kp = draw(st.binary(min_size=1, max_size=300)) if op in (IntentOp.ADD, IntentOp.READD) else b""
    return Intent(draw(id16), op, target, kp, draw(st.binary(max_size=16)),
                  draw(st.binary(max_size=32)))


contents = st.one_of(text_contents, profiles, intents())
app_headers = st.builds(AppHeader, st.integers(1, UINT63))
commit_headers = st.builds(CommitHeader, st.lists(id16, max_size=8).map(tuple))
channel_infos = st.builds(ChannelInfo, texts(128), sorted_peers(min_size=1))

# -- state.py -------------------------------------------------------------------------------

welcomed = st.lists(st.tuples(id16, peers, st.binary(max_size=40)), max_size=3).map(tuple)
epoch_nodes = st.builds(
    EpochNode,
    state_id=id16,
    epoch=st.integers(0, UINT63),
    parent=st.none() | st.binary(min_size=1, max_size=16),
    commit_hash=st.binary(max_size=32),
    committer=st.none() | peers,
    slot=st.integers(0, 1 << 16),
    removed=st.frozensets(peers, max_size=4),
    done=st.frozensets(id16, max_size=4),
    blob=st.binary(min_size=1, max_size=200),
    welcomed=welcomed,
)

# Timestamps as the node makes them today: wall-clock seconds (2004..2034) at millisecond
# resolution. Outside that era some exact-millisecond times do not survive storage (a known
# bug, pinned by test_state.test_exact_millisecond_times_survive_storage).
times = st.integers(1_100_000_000_000, 2_050_000_000_000).map(lambda ms: ms / 1000)

pending_commits = st.builds(
    PendingCommit,
    inner_id=st.binary(max_size=16),
    commit_hash=st.binary(max_size=32),
    sent_at=times,
    recipients=st.frozensets(peers, max_size=3),
    acked=st.frozensets(peers, max_size=3),
    acked_at=st.none() | times,
    welcomes=welcomed,
    slot=st.integers(0, UINT63),
    removed=st.frozensets(peers, max_size=3),
)


# Records that carry their content (a Text's record leaves it out: see test_state.py).
sent_messages = st.builds(SentMessage, id16, st.integers(-(1 << 64), (1 << 64) - 1),
                          st.binary(min_size=1, max_size=200), id16)


@st.composite
def channel_metas(draw: st.DrawFn) -> ChannelMeta:
    return ChannelMeta(
        status=draw(st.sampled_from(list(ChannelStatus))),
        my_seq=draw(st.integers(0, UINT63)),
        sender_seq=draw(st.dictionaries(peers, st.integers(0, UINT63), max_size=3)),
        profiles=draw(st.dictionaries(peers, texts(64), max_size=3)),
        intents=draw(st.dictionaries(
            id16, st.builds(PendingIntent, st.binary(max_size=50), peers, times), max_size=3)),
        pending_commit=draw(st.none() | pending_commits),
        last_commit_at=draw(times),
        display_name=draw(texts(256)),
        profile_epoch=draw(st.integers(-1, UINT63)),
    )


# -- structure-aware random input ----------------------------------------------------------

# Values of every CBOR type the canonical codec allows, a little nested.
cbor_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 64), (1 << 64) - 1),
    st.integers(-3, 40), st.binary(max_size=40), st.text(_chars, max_size=10),
    st.sampled_from([bytes(16), bytes(32), bytes(64), b"\x01\xed" + bytes(32),
                     b"\x02\xed" + bytes(32), b"\x01\xee" + bytes(32)]),
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(_chars, max_size=4) | st.integers(0, 5), inner, max_size=3),
    max_leaves=8,
)


def field_maps(
    layouts: dict[int, frozenset[str]], *, extra: dict[str, Any] | None = None
) -> st.SearchStrategy[dict[Any, Any]]:
    """Maps shaped like a channel structure (right or nearly right version, kind and keys)
    whose values are anything: reaches the per-field checks, not just the CBOR layer."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[Any, Any]:
        kind = draw(st.sampled_from(sorted(layouts)) | st.integers(-1, 8) | cbor_leaves)
        keys = set(layouts.get(kind, frozenset())) if isinstance(kind, int) else set()
        if draw(st.booleans()):
            keys ^= {draw(st.sampled_from(sorted({k for v in layouts.values() for k in v}
                                                 | {"x"})))}
        m: dict[Any, Any] = {k: draw(cbor_values) for k in keys}
        m["v"] = draw(st.just(1) | cbor_leaves)
        m["t"] = kind
        for k, v in (extra or {}).items():
            m[k] = v
        return m

    return build()


def mutations(data: bytes) -> Iterator[bytes]:
    """Every single-byte change of ``data`` from a fixed menu: bit flips and the CBOR head
    bytes most likely to turn one valid item into another (small ints, 1-byte heads, empty
    strings/arrays/maps, false/true/null)."""
    menu = (0x00, 0x01, 0x17, 0x18, 0x19, 0x20, 0x40, 0x41, 0x60, 0x80, 0x81, 0xA0,
            0xF4, 0xF5, 0xF6, 0xFF)
    for i, b in enumerate(data):
        seen = {b}
        for new in (b ^ 0x01, b ^ 0x02, b ^ 0x80, *menu):
            if new not in seen:
                seen.add(new)
                yield data[:i] + bytes((new,)) + data[i + 1 :]


def perturbed(objects: st.SearchStrategy[Any], to_map: Callable[[Any], dict[Any, Any]]
              ) -> st.SearchStrategy[dict[Any, Any]]:
    """A valid structure's map with one or two fields replaced by arbitrary values: every
    field check is reached with every kind of wrong value."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[Any, Any]:
        m = dict(to_map(draw(objects)))
        for key in draw(st.lists(st.sampled_from(sorted(m, key=str)), min_size=1, max_size=2)):
            m[key] = draw(cbor_values)
        return m

    return build()


def cbor_map(x: Any) -> dict[Any, Any]:
    """The map an encodable structure encodes to."""
    from node.core import cbor

    obj = cbor.decode(x.encode(), max_depth=8, max_items=1 << 16, max_size=1 << 22)
    assert isinstance(obj, dict)
    return obj
