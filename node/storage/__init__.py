"""Node persistence: the :class:`Storage` Protocol, SQLite and in-memory backends.

To add a table: append a ``Migration`` to ``node.storage.migrations.MIGRATIONS``, add the methods
to ``Storage`` and both backends, and extend ``tests/node/test_storage.py`` (which runs every test
against both).
"""

from node.storage.base import BlockEntry, PeerEntry, Storage
from node.storage.dhtstore import NodeDhtStore
from node.storage.memory import MemoryStorage
from node.storage.migrations import LATEST_VERSION, MIGRATIONS, Migration
from node.storage.sqlite import SqliteStorage

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "BlockEntry",
    "MemoryStorage",
    "Migration",
    "NodeDhtStore",
    "PeerEntry",
    "SqliteStorage",
    "Storage",
]
