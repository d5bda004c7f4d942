"""The secret tree and per-sender ratchets (RFC 9420 section 9), derived lazily.

Only the secrets on the way from the nearest stored ancestor down to a requested leaf are
derived, and each parent is deleted as soon as both children exist, so a compromise later
reveals nothing already consumed. Per leaf there is a handshake and an application ratchet;
a receiver may jump up to ``max_forward`` generations ahead (the keys skipped over are kept
for out-of-order messages) and keeps unused keys at most ``max_past`` generations behind the
newest derived one. A receiver first *peeks* at a key (derived and kept) and *consumes* it
only once the message authenticates, so a forgery cannot burn a genuine message's key; a
consumed key is deleted and asking for it again is an error (replay / nonce reuse).

A receiver that must leave the tree untouched when a message later fails (a bad signature,
an invalid commit) runs its reads inside ``with tree.transaction():``: the first touch of
each ratchet is journaled and an exception undoes every change, which costs O(1) per message
instead of copying the whole tree.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from mls import tree_math
from mls.codec import Reader, Writer, decode_exact
from mls.crypto.labels import derive_tree_secret, expand_with_label
from mls.crypto.suite import CipherSuite
from mls.errors import (
    DecodeError,
    GenerationTooFarError,
    GenerationTooOldError,
    KeyReuseError,
    SecretTreeError,
)

__all__ = [
    "DEFAULT_MAX_FORWARD",
    "DEFAULT_MAX_PAST",
    "GenerationTooFarError",
    "GenerationTooOldError",
    "KeyReuseError",
    "RatchetKey",
    "RatchetType",
    "SecretTree",
    "SecretTreeError",
    "sender_data_key_nonce",
]

DEFAULT_MAX_FORWARD = 1024
DEFAULT_MAX_PAST = 1024
_MAX_GENERATION = 0xFFFF_FFFF
_MAX_LEAVES = 1 << 24
_RATCHET_CODES = {"handshake": 1, "application": 2}


class RatchetType(enum.Enum):
    HANDSHAKE = "handshake"
    APPLICATION = "application"


@dataclass(frozen=True)
class RatchetKey:
    generation: int
    key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)


def sender_data_key_nonce(
    suite: CipherSuite, sender_data_secret: bytes, ciphertext: bytes
) -> tuple[bytes, bytes]:
    """Key and nonce for a PrivateMessage's sender data, from the first Nh ciphertext bytes."""
    sample = ciphertext[: suite.nh]
    key = expand_with_label(suite, sender_data_secret, "key", sample, suite.nk)
    nonce = expand_with_label(suite, sender_data_secret, "nonce", sample, suite.nn)
    return key, nonce


def _increasing(keys: list[Any]) -> bool:
    return all(a < b for a, b in itertools.pairwise(keys))


class _Ratchet:
    """One hash ratchet: ``secret`` is the chain secret of generation ``generation``."""

    __slots__ = ("generation", "secret", "skipped")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.generation = 0
        self.skipped: dict[int, tuple[bytes, bytes]] = {}

    def __repr__(self) -> str:
        return f"_Ratchet(generation={self.generation}, skipped={len(self.skipped)})"

    def copy(self) -> _Ratchet:
        new = _Ratchet(self.secret)
        new.generation = self.generation
        new.skipped = dict(self.skipped)
        return new

    def _step(self, suite: CipherSuite) -> tuple[bytes, bytes]:
        """Key and nonce of the current generation, then advance the chain."""
        g = self.generation
        key = derive_tree_secret(suite, self.secret, "key", g, suite.nk)
        nonce = derive_tree_secret(suite, self.secret, "nonce", g, suite.nn)
        self.secret = derive_tree_secret(suite, self.secret, "secret", g, suite.nh)
        self.generation = g + 1
        return key, nonce


# Journal entry: the ratchet as it was before its first change (None: it did not exist).
_Saved = tuple[_Ratchet, bytes, int, dict[int, tuple[bytes, bytes]]] | None


class _Transaction:
    """``with tree.transaction():`` — undo the block's changes to the tree if it raises."""

    __slots__ = ("_tree",)

    def __init__(self, tree: SecretTree) -> None:
        self._tree = tree

    def __enter__(self) -> SecretTree:
        tree = self._tree
        if tree._journal is not None:
            raise SecretTreeError("secret tree transactions do not nest")
        tree._journal = {}
        tree._saved_nodes = None
        return tree

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tree = self._tree
        try:
            if exc_type is not None:
                tree._rollback()
        finally:
            tree._journal = None
            tree._saved_nodes = None


class SecretTree:
    """Secret tree for one epoch's ``encryption_secret`` over ``n_leaves`` (a power of two)."""

    def __init__(
        self,
        suite: CipherSuite,
        encryption_secret: bytes,
        n_leaves: int,
        *,
        max_forward: int = DEFAULT_MAX_FORWARD,
        max_past: int = DEFAULT_MAX_PAST,
    ) -> None:
        if max_forward < 0 or max_past < 0:
            raise ValueError("bounds must be non-negative")
        self._suite = suite
        self._n_leaves = n_leaves
        self._nodes: dict[int, bytes] = {tree_math.root(n_leaves): encryption_secret}
        self._ratchets: dict[tuple[int, RatchetType], _Ratchet] = {}
        self.max_forward = max_forward
        self.max_past = max_past
        self._journal: dict[tuple[int, RatchetType], _Saved] | None = None
        self._saved_nodes: dict[int, bytes] | None = None

    def __repr__(self) -> str:
        return (
            f"SecretTree(n_leaves={self._n_leaves}, stored_nodes={len(self._nodes)}, "
            f"ratchets={len(self._ratchets)})"
        )

    @property
    def n_leaves(self) -> int:
        return self._n_leaves

    def copy(self) -> SecretTree:
        """An independent copy (node secrets, ratchets and kept keys); cost grows with the
        number of senders seen this epoch."""
        if self._journal is not None:
            raise SecretTreeError("cannot copy a secret tree inside a transaction")
        new = SecretTree.__new__(SecretTree)
        new._suite = self._suite
        new._n_leaves = self._n_leaves
        new._nodes = dict(self._nodes)
        new._ratchets = {k: r.copy() for k, r in self._ratchets.items()}
        new.max_forward = self.max_forward
        new.max_past = self.max_past
        new._journal = None
        new._saved_nodes = None
        return new

    def transaction(self) -> _Transaction:
        """A context manager: every change made to this tree inside the block is undone if
        the block raises (so a message that fails after its key was consumed leaves no
        trace). Transactions do not nest."""
        return _Transaction(self)

    def _rollback(self) -> None:
        journal = self._journal
        assert journal is not None
        ratchets = self._ratchets
        for key, saved in journal.items():
            if saved is None:
                ratchets.pop(key, None)
            else:
                ratchet, secret, generation, skipped = saved
                ratchet.secret = secret
                ratchet.generation = generation
                ratchet.skipped = skipped
                ratchets[key] = ratchet
        if self._saved_nodes is not None:
            self._nodes = self._saved_nodes
        journal.clear()

    def _leaf_secret(self, leaf: int) -> bytes:
        node = tree_math.leaf_to_node(leaf)
        path = [node, *tree_math.direct_path(node, self._n_leaves)]
        start = next((x for x in path if x in self._nodes), None)
        if start is None:  # cannot happen unless the leaf's ratchets exist already
            raise SecretTreeError(f"secret for leaf {leaf} already consumed")
        x = start
        while x != node:
            secret = self._nodes.pop(x)
            lx, rx = tree_math.left(x), tree_math.right(x)
            self._nodes[lx] = expand_with_label(
                self._suite, secret, "tree", b"left", self._suite.nh
            )
            self._nodes[rx] = expand_with_label(
                self._suite, secret, "tree", b"right", self._suite.nh
            )
            x = lx if node < x else rx
        return self._nodes.pop(node)

    @staticmethod
    def _saved(ratchet: _Ratchet | None) -> _Saved:
        if ratchet is None:
            return None
        return ratchet, ratchet.secret, ratchet.generation, dict(ratchet.skipped)

    def _ratchet(self, leaf: int, kind: RatchetType) -> _Ratchet:
        # Every change to the tree starts here, so this is where a transaction journals.
        journal = self._journal
        ratchet = self._ratchets.get((leaf, kind))
        if ratchet is not None:
            if journal is not None and (leaf, kind) not in journal:
                journal[(leaf, kind)] = self._saved(ratchet)
            return ratchet
        if not 0 <= leaf < self._n_leaves:
            raise SecretTreeError(f"leaf {leaf} outside a tree of {self._n_leaves} leaves")
        if journal is not None:
            if self._saved_nodes is None:
                self._saved_nodes = dict(self._nodes)
            for k in RatchetType:
                if (leaf, k) not in journal:
                    journal[(leaf, k)] = self._saved(self._ratchets.get((leaf, k)))
        leaf_secret = self._leaf_secret(leaf)
        nh = self._suite.nh
        for k in RatchetType:
            secret = expand_with_label(self._suite, leaf_secret, k.value, b"", nh)
            self._ratchets[(leaf, k)] = _Ratchet(secret)
        return self._ratchets[(leaf, kind)]

    def next_key(self, leaf: int, kind: RatchetType) -> RatchetKey:
        """Sender side: the next unused generation of ``leaf``'s ratchet."""
        ratchet = self._ratchet(leaf, kind)
        if ratchet.generation > _MAX_GENERATION:
            raise GenerationTooFarError("ratchet exhausted")
        g = ratchet.generation
        key, nonce = ratchet._step(self._suite)
        self._prune(ratchet)
        return RatchetKey(g, key, nonce)

    def peek_key(self, leaf: int, kind: RatchetType, generation: int) -> RatchetKey:
        """Receiver side: the key of ``generation`` without consuming it.

        Derives forward (within ``max_forward``) as needed and keeps the key until
        ``consume`` is called, so a message can be authenticated before its generation is
        spent: a forged copy must not burn the key the genuine message needs."""
        ratchet = self._ratchet(leaf, kind)
        if generation < 0 or generation > _MAX_GENERATION:
            raise GenerationTooFarError(f"generation {generation} out of range")
        if generation < ratchet.generation:
            kept = ratchet.skipped.get(generation)
            if kept is not None:
                return RatchetKey(generation, *kept)
            if generation < ratchet.generation - self.max_past:
                raise GenerationTooOldError(f"generation {generation} is no longer kept")
            raise KeyReuseError(f"generation {generation} was already used")
        if generation - ratchet.generation > self.max_forward:
            raise GenerationTooFarError(
                f"generation {generation} is more than {self.max_forward} ahead"
            )
        step = ratchet._step
        skipped = ratchet.skipped
        suite = self._suite
        while ratchet.generation <= generation:
            g = ratchet.generation
            skipped[g] = step(suite)
        self._prune(ratchet, keep=generation)
        return RatchetKey(generation, *skipped[generation])

    def consume(self, leaf: int, kind: RatchetType, generation: int) -> RatchetKey:
        """Receiver side: spend ``generation``'s key (deriving it first if needed) and return
        it; afterwards any request for it raises KeyReuseError."""
        key = self.peek_key(leaf, kind, generation)
        del self._ratchets[(leaf, kind)].skipped[generation]
        return key

    def key_for(self, leaf: int, kind: RatchetType, generation: int) -> RatchetKey:
        """Receiver side: the key of ``generation``, consumed by this call."""
        return self.consume(leaf, kind, generation)

    def _prune(self, ratchet: _Ratchet, keep: int | None = None) -> None:
        # ``keep`` survives this pass even with max_past == 0: it was just peeked and is
        # waiting for its message to authenticate; a later pass may drop it.
        floor = ratchet.generation - self.max_past
        if keep is not None:
            floor = min(floor, keep)
        if ratchet.skipped and min(ratchet.skipped) < floor:
            for g in [g for g in ratchet.skipped if g < floor]:
                del ratchet.skipped[g]

    # Conveniences matching RFC 9420's ratchet names.
    def handshake_key(self, leaf: int, generation: int) -> RatchetKey:
        return self.key_for(leaf, RatchetType.HANDSHAKE, generation)

    def application_key(self, leaf: int, generation: int) -> RatchetKey:
        return self.key_for(leaf, RatchetType.APPLICATION, generation)

    def next_handshake_key(self, leaf: int) -> RatchetKey:
        return self.next_key(leaf, RatchetType.HANDSHAKE)

    def next_application_key(self, leaf: int) -> RatchetKey:
        return self.next_key(leaf, RatchetType.APPLICATION)

    # Storage: the live state (remaining node secrets, ratchets, kept keys) as bytes. It holds
    # secrets, so it belongs in the node's protected store only.
    def to_bytes(self) -> bytes:
        w = Writer().uint32(self._n_leaves).uint32(self.max_forward).uint32(self.max_past)
        w.vector(sorted(self._nodes.items()), lambda w, kv: w.uint32(kv[0]).opaque(kv[1]))
        ratchets = sorted(self._ratchets.items(), key=lambda kv: (kv[0][0], kv[0][1].value))

        def write_ratchet(w: Writer, item: tuple[tuple[int, RatchetType], _Ratchet]) -> None:
            (leaf, kind), r = item
            w.uint32(leaf).uint8(_RATCHET_CODES[kind.value]).uint32(r.generation)
            w.opaque(r.secret)
            w.vector(
                sorted(r.skipped.items()),
                lambda w, kv: w.uint32(kv[0]).opaque(kv[1][0]).opaque(kv[1][1]),
            )

        w.vector(ratchets, write_ratchet)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, suite: CipherSuite, data: bytes) -> SecretTree:
        """Inverse of ``to_bytes``; raises DecodeError on anything inconsistent."""
        return decode_exact(data, lambda r: cls._read(suite, r))

    @classmethod
    def _read(cls, suite: CipherSuite, r: Reader) -> SecretTree:
        n_leaves, max_forward, max_past = r.uint32(), r.uint32(), r.uint32()
        if n_leaves < 1 or n_leaves > _MAX_LEAVES or n_leaves & (n_leaves - 1):
            raise DecodeError(f"bad secret tree leaf count {n_leaves}")
        width = 2 * n_leaves - 1

        def read_secret(r: Reader, size: int) -> bytes:
            value = r.opaque(size)
            if len(value) != size:
                raise DecodeError("secret has the wrong length")
            return value

        def read_node(r: Reader) -> tuple[int, bytes]:
            x = r.uint32()
            if x >= width:
                raise DecodeError(f"node {x} outside the tree")
            return x, read_secret(r, suite.nh)

        def read_kept(r: Reader) -> tuple[int, tuple[bytes, bytes]]:
            return r.uint32(), (read_secret(r, suite.nk), read_secret(r, suite.nn))

        kinds = {code: RatchetType(name) for name, code in _RATCHET_CODES.items()}

        def read_ratchet(r: Reader) -> tuple[tuple[int, RatchetType], _Ratchet]:
            leaf, code, generation = r.uint32(), r.uint8(), r.uint32()
            if leaf >= n_leaves or code not in kinds:
                raise DecodeError("bad ratchet leaf or type")
            ratchet = _Ratchet(read_secret(r, suite.nh))
            ratchet.generation = generation
            kept = r.vector(read_kept)
            gens = [g for g, _ in kept]
            if not _increasing(gens) or (gens and gens[-1] >= generation):
                raise DecodeError("bad kept generations")
            ratchet.skipped = dict(kept)
            return (leaf, kinds[code]), ratchet

        nodes = r.vector(read_node)
        ratchets = r.vector(read_ratchet)
        tree = cls(suite, b"", n_leaves, max_forward=max_forward, max_past=max_past)
        # Canonical form only (strictly increasing keys), so bytes -> state -> bytes is exact.
        if not _increasing([x for x, _ in nodes]) or not _increasing(
            [(leaf, kind.value) for (leaf, kind), _ in ratchets]
        ):
            raise DecodeError("nodes or ratchets not in canonical order")
        tree._nodes = dict(nodes)
        tree._ratchets = dict(ratchets)
        return tree
