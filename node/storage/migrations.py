"""Ordered, forward-only schema migrations for the node database.

Version N is reached by applying ``MIGRATIONS[N-1]``; each one runs in its own transaction
together with the version bump, so a crash mid-migration leaves the previous version intact.
Never edit a released migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "node metadata key/value",
        (
            """CREATE TABLE meta (
                key   TEXT PRIMARY KEY NOT NULL,
                value BLOB NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "peer address book",
        (
            """CREATE TABLE peers (
                peer_id      BLOB PRIMARY KEY NOT NULL CHECK (length(peer_id) = 34),
                added        REAL NOT NULL,
                last_seen    REAL,
                failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
                last_failure REAL
            ) WITHOUT ROWID""",
            # One row per address; position keeps the caller's preference order.
            """CREATE TABLE peer_addrs (
                peer_id  BLOB NOT NULL REFERENCES peers(peer_id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                addr     TEXT NOT NULL,
                PRIMARY KEY (peer_id, position)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        3,
        "DHT routing-table snapshot and stored records",
        (
            # Replaced wholesale by each snapshot; position keeps the table's order.
            """CREATE TABLE dht_contacts (
                position INTEGER PRIMARY KEY NOT NULL CHECK (position >= 0),
                peer_id  BLOB NOT NULL UNIQUE,
                host     TEXT NOT NULL,
                port     INTEGER NOT NULL,
                saved_at REAL NOT NULL
            )""",
            # key: the record's 20-byte DHT key; value: the signed record as received (it is
            # verified again when the DHT loads it).
            """CREATE TABLE dht_records (
                key      BLOB PRIMARY KEY NOT NULL,
                value    BLOB NOT NULL,
                saved_at REAL NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        4,
        "channels: group states, epoch nodes, sent, messages, outbox, seen envelopes, invites",
        (
            # group_state and meta are the channel layer's encodings (MLS secrets inside).
            """CREATE TABLE channels (
                channel_id  BLOB PRIMARY KEY NOT NULL CHECK (length(channel_id) = 32),
                group_state BLOB NOT NULL,
                meta        BLOB NOT NULL
            ) WITHOUT ROWID""",
            # Our own messages kept while their epoch could still lose (re-sent if it does).
            """CREATE TABLE channel_sent (
                channel_id BLOB NOT NULL REFERENCES channels(channel_id) ON DELETE CASCADE,
                message_id BLOB NOT NULL,
                record     BLOB NOT NULL,
                PRIMARY KEY (channel_id, message_id)
            ) WITHOUT ROWID""",
            """CREATE TABLE channel_nodes (
                channel_id BLOB NOT NULL REFERENCES channels(channel_id) ON DELETE CASCADE,
                state_id   BLOB NOT NULL,
                node       BLOB NOT NULL,
                PRIMARY KEY (channel_id, state_id)
            ) WITHOUT ROWID""",
            # cursor: the order this node stored them in (the messages API pages by it).
            """CREATE TABLE channel_messages (
                cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
                channel_id  BLOB NOT NULL,
                message_id  BLOB NOT NULL,
                sender      BLOB NOT NULL,
                sender_name TEXT NOT NULL,
                text        TEXT NOT NULL,
                sent_at_ms  INTEGER NOT NULL,
                received_at REAL NOT NULL,
                seq         INTEGER NOT NULL,
                seen_by     INTEGER NOT NULL DEFAULT 0,
                UNIQUE (channel_id, message_id)
            )""",
            "CREATE INDEX channel_messages_by_channel ON channel_messages (channel_id, cursor)",
            # body: a channel envelope's payload (sealed afresh with the keys when sent) or a
            # sealed invite envelope (keys NULL).
            """CREATE TABLE outbox (
                item_id      BLOB PRIMARY KEY NOT NULL,
                channel_id   BLOB,
                body         BLOB NOT NULL,
                envelope_key BLOB,
                tag_key      BLOB,
                created      REAL NOT NULL
            )""",
            """CREATE TABLE outbox_recipients (
                item_id BLOB NOT NULL REFERENCES outbox(item_id) ON DELETE CASCADE,
                peer_id BLOB NOT NULL,
                PRIMARY KEY (item_id, peer_id)
            ) WITHOUT ROWID""",
            """CREATE TABLE seen_envelopes (
                envelope_id BLOB PRIMARY KEY NOT NULL,
                seen_at     REAL NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX seen_envelopes_by_time ON seen_envelopes (seen_at)",
            """CREATE TABLE invites (
                invite_id BLOB PRIMARY KEY NOT NULL,
                record    BLOB NOT NULL,
                created   REAL NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        5,
        "deny list: peers refused inbound and never dialled",
        (
            """CREATE TABLE blocked_peers (
                peer_id    BLOB PRIMARY KEY NOT NULL CHECK (length(peer_id) = 34),
                blocked_at REAL NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        6,
        "mailboxes: envelopes held for others, per-key, per-uploader and total counters",
        (
            # One row per held envelope. seq: the key's log position (the fetch cursor);
            # digest: SHA-256 of the envelope (stored once per key); uploader: a pseudonym
            # keyed with the holder's secret, never a PeerId (docs/mailboxes.md 14.6). A rowid
            # table: envelopes are up to ~1 MiB, too large for WITHOUT ROWID.
            """CREATE TABLE mailbox_entries (
                key        BLOB NOT NULL CHECK (length(key) = 20),
                seq        INTEGER NOT NULL CHECK (seq >= 1),
                digest     BLOB NOT NULL CHECK (length(digest) = 32),
                uploader   BLOB NOT NULL CHECK (length(uploader) = 16),
                envelope   BLOB NOT NULL,
                size       INTEGER NOT NULL CHECK (size = length(envelope) AND size >= 1),
                stored_at  REAL NOT NULL,
                expires_at REAL NOT NULL,
                UNIQUE (key, seq),
                UNIQUE (key, digest)
            )""",
            # Fetch pages plan on this index alone (no envelope read until the page is cut).
            "CREATE INDEX mailbox_entries_page ON mailbox_entries (key, seq, size, expires_at)",
            "CREATE INDEX mailbox_entries_by_expiry ON mailbox_entries (expires_at)",
            # Counters kept by the triggers below, so every quota check is a key lookup.
            # A key's row outlives its entries until expires_at (the latest expiry it held),
            # so its sequence numbers never restart while a fetcher may hold a cursor.
            """CREATE TABLE mailbox_keys (
                key        BLOB PRIMARY KEY NOT NULL CHECK (length(key) = 20),
                last_seq   INTEGER NOT NULL CHECK (last_seq >= 0),
                envelopes  INTEGER NOT NULL CHECK (envelopes >= 0),
                bytes      INTEGER NOT NULL CHECK (bytes >= 0),
                expires_at REAL NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX mailbox_keys_by_expiry ON mailbox_keys (expires_at)",
            """CREATE TABLE mailbox_uploaders (
                uploader  BLOB PRIMARY KEY NOT NULL CHECK (length(uploader) = 16),
                envelopes INTEGER NOT NULL CHECK (envelopes >= 0),
                bytes     INTEGER NOT NULL CHECK (bytes >= 0)
            ) WITHOUT ROWID""",
            """CREATE TABLE mailbox_totals (
                id        INTEGER PRIMARY KEY CHECK (id = 1),
                envelopes INTEGER NOT NULL CHECK (envelopes >= 0),
                bytes     INTEGER NOT NULL CHECK (bytes >= 0)
            )""",
            "INSERT INTO mailbox_totals (id, envelopes, bytes) VALUES (1, 0, 0)",
            """CREATE TRIGGER mailbox_entry_added AFTER INSERT ON mailbox_entries BEGIN
                UPDATE mailbox_keys SET envelopes = envelopes + 1, bytes = bytes + new.size,
                    expires_at = max(expires_at, new.expires_at) WHERE key = new.key;
                INSERT INTO mailbox_uploaders (uploader, envelopes, bytes)
                    VALUES (new.uploader, 1, new.size)
                    ON CONFLICT (uploader) DO UPDATE SET envelopes = envelopes + 1,
                    bytes = bytes + new.size;
                UPDATE mailbox_totals SET envelopes = envelopes + 1, bytes = bytes + new.size
                    WHERE id = 1;
            END""",
            """CREATE TRIGGER mailbox_entry_removed AFTER DELETE ON mailbox_entries BEGIN
                UPDATE mailbox_keys SET envelopes = envelopes - 1, bytes = bytes - old.size
                    WHERE key = old.key;
                UPDATE mailbox_uploaders SET envelopes = envelopes - 1, bytes = bytes - old.size
                    WHERE uploader = old.uploader;
                DELETE FROM mailbox_uploaders WHERE uploader = old.uploader AND envelopes = 0;
                UPDATE mailbox_totals SET envelopes = envelopes - 1, bytes = bytes - old.size
                    WHERE id = 1;
            END""",
        ),
    ),
    Migration(
        7,
        "channel messages: stored (held by every member or by 2 of 3 mailbox holders)",
        ("ALTER TABLE channel_messages ADD COLUMN stored INTEGER NOT NULL DEFAULT 0",),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def check_migrations(migrations: tuple[Migration, ...]) -> None:
    """Versions must be exactly 1, 2, 3...: a gap or reorder is a programming error."""
    for i, m in enumerate(migrations, start=1):
        if m.version != i:
            raise ValueError(f"migration #{i} has version {m.version}; versions must be 1..N")
        if not m.statements:
            raise ValueError(f"migration {m.version} has no statements")


check_migrations(MIGRATIONS)
