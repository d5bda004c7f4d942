"""The node database's channel tables: group states, epoch nodes, messages, the outbox,
seen envelope ids and invites.

Everything the channel layer changes while handling a batch of inputs is written by one
:meth:`ChannelStore.write` call, in one transaction (:class:`ChannelBatch`): a message, the
group state that decrypted it, the seen id of its envelope and the outbox entries it caused
are durable together or not at all. The blobs are the channel layer's own encodings (they
hold MLS secrets: the database file is 0600).

:class:`SqliteChannelStore` shares the node's aiosqlite connection; :class:`MemoryChannelStore`
is its twin for tests and simulations (the same test suite holds both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from node.core.errors import IdentityError, StorageError
from node.core.identity import PeerId

if TYPE_CHECKING:
    from node.storage.sqlite import SqliteStorage

__all__ = [
    "ChannelBatch",
    "ChannelRow",
    "ChannelStore",
    "MemoryChannelStore",
    "MessageRow",
    "OutboxRow",
    "SqliteChannelStore",
]

MAX_PAGE = 1000


@dataclass(frozen=True)
class ChannelRow:
    channel_id: bytes
    group_state: bytes
    meta: bytes
    nodes: tuple[bytes, ...] = ()  # encoded epoch nodes (on load)
    # (message id, record, stored text, sent_at_ms) of our messages kept for re-sending; a
    # text message's record omits its content (the message row has it: text and sent_at).
    sent: tuple[tuple[bytes, bytes, str | None, int | None], ...] = ()


@dataclass(frozen=True)
class MessageRow:
    channel_id: bytes
    message_id: bytes
    sender: PeerId
    sender_name: str
    text: str
    sent_at_ms: int
    received_at: float
    seq: int
    cursor: int = 0  # assigned by the store (insertion order)
    seen_by: int = 0  # our own messages: how many other members are known to have it
    stored: bool = False  # our own messages: every member, or 2 of 3 mailbox holders, has it


@dataclass(frozen=True)
class OutboxRow:
    """An envelope owed to ``recipients``. A channel envelope is stored as its ``body`` (the
    payload) and ``keys`` (envelope and tag key): it is sealed afresh when sent, so the row
    never needs updating; an invite envelope (``keys`` None) is stored sealed."""

    item_id: bytes
    channel_id: bytes | None
    body: bytes
    keys: tuple[bytes, bytes] | None
    recipients: frozenset[PeerId]
    created: float
    position: int = 0  # assigned by the store (creation order)


@dataclass
class ChannelBatch:
    channels: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # id, group, meta
    channels_deleted: list[bytes] = field(default_factory=list)
    nodes_added: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # cid, sid, node
    nodes_removed: list[tuple[bytes, bytes]] = field(default_factory=list)
    sent_saved: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)  # cid, mid, rec
    sent_deleted: list[tuple[bytes, bytes]] = field(default_factory=list)
    messages: list[MessageRow] = field(default_factory=list)
    seen_by: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # cid, mid, count
    stored: list[tuple[bytes, bytes]] = field(default_factory=list)  # cid, mid
    outbox_added: list[OutboxRow] = field(default_factory=list)
    outbox_acked: list[tuple[bytes, PeerId]] = field(default_factory=list)
    outbox_removed: list[bytes] = field(default_factory=list)
    seen: list[tuple[bytes, float]] = field(default_factory=list)
    invites_saved: list[tuple[bytes, bytes, float]] = field(default_factory=list)  # id, rec, t
    invites_deleted: list[bytes] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(bool(v) for v in self.__dict__.values())


class ChannelStore(Protocol):
    async def write(self, batch: ChannelBatch) -> None:
        """Apply the whole batch in one transaction (nothing of it on failure)."""
        ...

    async def load_channels(self) -> list[ChannelRow]: ...

    async def load_outbox(self) -> list[OutboxRow]:
        """Every item still owed to someone, in creation order."""
        ...

    async def load_invites(self) -> list[bytes]: ...

    async def load_seen(self, since: float) -> list[bytes]: ...

    async def prune_seen(self, before: float) -> int: ...

    async def messages(
        self, channel_id: bytes, after: int = 0, limit: int = 100
    ) -> list[MessageRow]:
        """Messages of a channel with cursor > ``after``, oldest first, at most ``limit``."""
        ...

    async def message_count(self, channel_id: bytes) -> int: ...


def _peer(raw: object) -> PeerId:
    if not isinstance(raw, bytes):
        raise StorageError("corrupt PeerId in the channel tables: not bytes")
    try:
        return PeerId.from_bytes(raw)
    except IdentityError as exc:
        raise StorageError(f"corrupt PeerId in the channel tables: {exc}") from None


def _check_page(after: int, limit: int) -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise StorageError("cursor must be a non-negative integer")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise StorageError(f"limit must be 1..{MAX_PAGE}")


class SqliteChannelStore:
    def __init__(self, storage: SqliteStorage) -> None:
        self._s = storage

    async def write(self, batch: ChannelBatch) -> None:
        s = self._s
        async with s._transaction():
            if batch.channels:
                await s._run_many(
                    "INSERT INTO channels (channel_id, group_state, meta) VALUES (?, ?, ?)"
                    " ON CONFLICT(channel_id) DO UPDATE SET group_state = excluded.group_state,"
                    " meta = excluded.meta",
                    batch.channels,
                )
            for cid in batch.channels_deleted:
                await s._run("DELETE FROM channels WHERE channel_id = ?", (cid,))
            if batch.nodes_added:
                await s._run_many(
                    "INSERT OR REPLACE INTO channel_nodes (channel_id, state_id, node)"
                    " VALUES (?, ?, ?)",
                    batch.nodes_added,
                )
            if batch.nodes_removed:
                await s._run_many(
                    "DELETE FROM channel_nodes WHERE channel_id = ? AND state_id = ?",
                    batch.nodes_removed,
                )
            if batch.sent_saved:
                await s._run_many(
                    "INSERT OR REPLACE INTO channel_sent (channel_id, message_id, record)"
                    " VALUES (?, ?, ?)",
                    batch.sent_saved,
                )
            if batch.sent_deleted:
                await s._run_many(
                    "DELETE FROM channel_sent WHERE channel_id = ? AND message_id = ?",
                    batch.sent_deleted,
                )
            if batch.messages:
                await s._run_many(
                    "INSERT OR IGNORE INTO channel_messages (channel_id, message_id, sender,"
                    " sender_name, text, sent_at_ms, received_at, seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (m.channel_id, m.message_id, m.sender.binary, m.sender_name, m.text,
                         m.sent_at_ms, m.received_at, m.seq)
                        for m in batch.messages
                    ],
                )
            if batch.seen_by:
                await s._run_many(
                    "UPDATE channel_messages SET seen_by = max(seen_by, ?)"
                    " WHERE channel_id = ? AND message_id = ?",
                    [(n, cid, mid) for cid, mid, n in batch.seen_by],
                )
            if batch.stored:
                await s._run_many(
                    "UPDATE channel_messages SET stored = 1"
                    " WHERE channel_id = ? AND message_id = ?",
                    batch.stored,
                )
            if batch.outbox_added:
                # An item already stored keeps its recipients (re-adding changes nothing).
                ids = [row.item_id for row in batch.outbox_added]
                marks = ",".join("?" * len(ids))
                known = {
                    bytes(r[0])
                    for r in await s._run(
                        f"SELECT item_id FROM outbox WHERE item_id IN ({marks})", ids
                    )
                }
                await s._run_many(
                    "INSERT OR IGNORE INTO outbox (item_id, channel_id, body, envelope_key,"
                    " tag_key, created) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (row.item_id, row.channel_id, row.body,
                         None if row.keys is None else row.keys[0],
                         None if row.keys is None else row.keys[1], row.created)
                        for row in batch.outbox_added
                    ],
                )
                await s._run_many(
                    "INSERT OR IGNORE INTO outbox_recipients (item_id, peer_id) VALUES (?, ?)",
                    [
                        (row.item_id, p.binary)
                        for row in batch.outbox_added
                        if row.item_id not in known
                        for p in sorted(row.recipients)
                    ],
                )
            if batch.outbox_acked:
                await s._run_many(
                    "DELETE FROM outbox_recipients WHERE item_id = ? AND peer_id = ?",
                    [(i, p.binary) for i, p in batch.outbox_acked],
                )
                # Only the items just acknowledged can have become owed to nobody.
                await s._run_many(
                    "DELETE FROM outbox WHERE item_id = ? AND NOT EXISTS"
                    " (SELECT 1 FROM outbox_recipients r WHERE r.item_id = ?)",
                    [(i, i) for i in dict.fromkeys(i for i, _ in batch.outbox_acked)],
                )
            if batch.outbox_removed:
                await s._run_many(
                    "DELETE FROM outbox WHERE item_id = ?", [(i,) for i in batch.outbox_removed]
                )
            if batch.seen:
                await s._run_many(
                    "INSERT OR IGNORE INTO seen_envelopes (envelope_id, seen_at) VALUES (?, ?)",
                    batch.seen,
                )
            if batch.invites_saved:
                await s._run_many(
                    "INSERT OR REPLACE INTO invites (invite_id, record, created) VALUES (?, ?, ?)",
                    batch.invites_saved,
                )
            if batch.invites_deleted:
                await s._run_many(
                    "DELETE FROM invites WHERE invite_id = ?",
                    [(i,) for i in batch.invites_deleted],
                )

    async def load_channels(self) -> list[ChannelRow]:
        s = self._s
        async with s._transaction():
            rows = await s._run("SELECT channel_id, group_state, meta FROM channels"
                                " ORDER BY channel_id")
            node_rows = await s._run("SELECT channel_id, node FROM channel_nodes"
                                     " ORDER BY channel_id, state_id")
            sent_rows = await s._run(
                "SELECT s.channel_id, s.message_id, s.record, m.text, m.sent_at_ms"
                " FROM channel_sent s LEFT JOIN channel_messages m"
                " ON m.channel_id = s.channel_id AND m.message_id = s.message_id"
            )
        nodes: dict[bytes, list[bytes]] = {}
        for cid, node in node_rows:
            nodes.setdefault(bytes(cid), []).append(bytes(node))
        sent: dict[bytes, list[tuple[bytes, bytes, str | None, int | None]]] = {}
        for cid, mid, record, text, at in sent_rows:
            sent.setdefault(bytes(cid), []).append(
                (bytes(mid), bytes(record), None if text is None else str(text),
                 None if at is None else int(at))
            )
        return [ChannelRow(bytes(c), bytes(g), bytes(m), tuple(nodes.get(bytes(c), ())),
                           tuple(sent.get(bytes(c), ())))
                for c, g, m in rows]

    async def load_outbox(self) -> list[OutboxRow]:
        s = self._s
        async with s._transaction():
            rows = await s._run(
                "SELECT rowid, item_id, channel_id, body, envelope_key, tag_key, created"
                " FROM outbox ORDER BY rowid"
            )
            rcpt = await s._run("SELECT item_id, peer_id FROM outbox_recipients")
        recipients: dict[bytes, set[PeerId]] = {}
        for item_id, peer in rcpt:
            recipients.setdefault(bytes(item_id), set()).add(_peer(peer))
        out = []
        for pos, item_id, cid, body, ekey, tkey, created in rows:
            keys = None if ekey is None else (bytes(ekey), bytes(tkey))
            out.append(OutboxRow(bytes(item_id), None if cid is None else bytes(cid),
                                 bytes(body), keys,
                                 frozenset(recipients.get(bytes(item_id), ())), float(created),
                                 int(pos)))
        return out

    async def load_invites(self) -> list[bytes]:
        async with self._s._transaction():
            rows = await self._s._run("SELECT record FROM invites ORDER BY created")
        return [bytes(r[0]) for r in rows]

    async def load_seen(self, since: float) -> list[bytes]:
        async with self._s._transaction():
            rows = await self._s._run(
                "SELECT envelope_id FROM seen_envelopes WHERE seen_at >= ? ORDER BY seen_at",
                (since,),
            )
        return [bytes(r[0]) for r in rows]

    async def prune_seen(self, before: float) -> int:
        async with self._s._transaction():
            await self._s._run("DELETE FROM seen_envelopes WHERE seen_at < ?", (before,))
            rows = await self._s._run("SELECT changes()")
        return int(rows[0][0])

    async def messages(
        self, channel_id: bytes, after: int = 0, limit: int = 100
    ) -> list[MessageRow]:
        _check_page(after, limit)
        async with self._s._transaction():
            rows = await self._s._run(
                "SELECT cursor, message_id, sender, sender_name, text, sent_at_ms, received_at,"
                " seq, seen_by, stored FROM channel_messages WHERE channel_id = ? AND cursor > ?"
                " ORDER BY cursor LIMIT ?",
                (channel_id, after, limit),
            )
        return [
            MessageRow(channel_id, bytes(mid), _peer(sender), str(name), str(text),
                       int(sent_at), float(received_at), int(seq), int(cursor), int(seen),
                       bool(stored))
            for cursor, mid, sender, name, text, sent_at, received_at, seq, seen, stored in rows
        ]

    async def message_count(self, channel_id: bytes) -> int:
        async with self._s._transaction():
            rows = await self._s._run(
                "SELECT count(*) FROM channel_messages WHERE channel_id = ?", (channel_id,)
            )
        return int(rows[0][0])


class MemoryChannelStore:
    """The in-memory twin (same semantics, including insert-or-ignore, cursors, the checks
    SQLite's constraints make, and all-or-nothing batches)."""

    def __init__(self, check_open: Callable[[], None] | None = None) -> None:
        self._check_open = check_open or (lambda: None)
        self.channels: dict[bytes, tuple[bytes, bytes]] = {}
        self.nodes: dict[tuple[bytes, bytes], bytes] = {}
        self.sent: dict[tuple[bytes, bytes], bytes] = {}
        self._messages: list[MessageRow] = []
        self._message_index: dict[tuple[bytes, bytes], int] = {}
        self.outbox: dict[bytes, OutboxRow] = {}
        self.seen: dict[bytes, float] = {}
        self.invites: dict[bytes, tuple[bytes, float]] = {}
        self._position = 0

    def _validate(self, batch: ChannelBatch) -> None:
        """What SQLite's CHECK and foreign keys refuse, refused before anything changes."""
        self._check_open()
        for cid, _, _ in batch.channels:
            if len(cid) != 32:
                raise StorageError("channel id must be 32 bytes")
        existing = (set(self.channels) | {c for c, _, _ in batch.channels}) - set(
            batch.channels_deleted
        )
        for cid in [c for c, _, _ in batch.nodes_added] + [c for c, _, _ in batch.sent_saved]:
            if cid not in existing:
                raise StorageError("epoch node or sent record for a channel that is not stored")

    async def write(self, batch: ChannelBatch) -> None:
        self._validate(batch)
        for cid, group, meta in batch.channels:
            self.channels[cid] = (group, meta)
        for cid in batch.channels_deleted:
            self.channels.pop(cid, None)
            for key in [k for k in self.nodes if k[0] == cid]:
                del self.nodes[key]
            for key in [k for k in self.sent if k[0] == cid]:
                del self.sent[key]
        for cid, sid, node in batch.nodes_added:
            self.nodes[(cid, sid)] = node
        for key in batch.nodes_removed:
            self.nodes.pop(key, None)
        for cid, mid, record in batch.sent_saved:
            self.sent[(cid, mid)] = record
        for key in batch.sent_deleted:
            self.sent.pop(key, None)
        for m in batch.messages:
            if (m.channel_id, m.message_id) not in self._message_index:
                self._message_index[(m.channel_id, m.message_id)] = len(self._messages)
                self._messages.append(
                    MessageRow(m.channel_id, m.message_id, m.sender, m.sender_name, m.text,
                               m.sent_at_ms, m.received_at, m.seq, len(self._messages) + 1)
                )
        for cid, mid, n in batch.seen_by:
            i = self._message_index.get((cid, mid))
            if i is not None and n > self._messages[i].seen_by:
                self._messages[i] = replace(self._messages[i], seen_by=n)
        for key in batch.stored:
            i = self._message_index.get(key)
            if i is not None:
                self._messages[i] = replace(self._messages[i], stored=True)
        for row in batch.outbox_added:
            if row.item_id not in self.outbox:
                self._position += 1
                self.outbox[row.item_id] = OutboxRow(
                    row.item_id, row.channel_id, row.body, row.keys, row.recipients,
                    row.created, self._position,
                )
        for item_id, peer in batch.outbox_acked:
            old = self.outbox.get(item_id)
            if old is not None:
                left = old.recipients - {peer}
                if left:
                    self.outbox[item_id] = OutboxRow(old.item_id, old.channel_id, old.body,
                                                     old.keys, left, old.created, old.position)
                else:
                    del self.outbox[item_id]
        for item_id in batch.outbox_removed:
            self.outbox.pop(item_id, None)
        for eid, at in batch.seen:
            self.seen.setdefault(eid, at)
        for iid, record, created in batch.invites_saved:
            self.invites[iid] = (record, created)
        for iid in batch.invites_deleted:
            self.invites.pop(iid, None)

    async def load_channels(self) -> list[ChannelRow]:
        self._check_open()
        return [
            ChannelRow(
                cid, g, m,
                tuple(n for (c, _), n in sorted(self.nodes.items()) if c == cid),
                tuple(
                    (mid, r, *self._text_of(cid, mid))
                    for (c, mid), r in sorted(self.sent.items()) if c == cid
                ),
            )
            for cid, (g, m) in sorted(self.channels.items())
        ]

    def _text_of(self, cid: bytes, mid: bytes) -> tuple[str | None, int | None]:
        for m in self._messages:
            if m.channel_id == cid and m.message_id == mid:
                return m.text, m.sent_at_ms
        return None, None

    async def load_outbox(self) -> list[OutboxRow]:
        self._check_open()
        return sorted(self.outbox.values(), key=lambda r: r.position)

    async def load_invites(self) -> list[bytes]:
        self._check_open()
        return [r for r, _ in sorted(self.invites.values(), key=lambda v: v[1])]

    async def load_seen(self, since: float) -> list[bytes]:
        self._check_open()
        return [e for e, at in sorted(self.seen.items(), key=lambda kv: kv[1]) if at >= since]

    async def prune_seen(self, before: float) -> int:
        self._check_open()
        old = [e for e, at in self.seen.items() if at < before]
        for e in old:
            del self.seen[e]
        return len(old)

    async def messages(
        self, channel_id: bytes, after: int = 0, limit: int = 100
    ) -> list[MessageRow]:
        self._check_open()
        _check_page(after, limit)
        found = [m for m in self._messages if m.channel_id == channel_id and m.cursor > after]
        return found[:limit]

    async def message_count(self, channel_id: bytes) -> int:
        self._check_open()
        return sum(1 for m in self._messages if m.channel_id == channel_id)
