"""When direct delivery is not enough, sans-I/O: relay through the mesh, store in mailboxes.

Direct delivery (``delivery.py``) brings an envelope to each member over a link. An outbox
item that a member still owes an acknowledgement for, and that member has no link or the
item has waited ``grace_s``, is a *straggler*; for each straggler this core says when to

* **relay** it (publish to the mesh, docs/PROTOCOL.md section 14): at once, then again every
  ``relay_again_s`` while it is still owed, at most ``max_relays`` times; our own messages go
  along a stem first (origin hiding), commits are published straight away (they are urgent);
* **place** it in mailboxes (section 15): at the k = 3 nodes closest to its mailbox key,
  retried every ``place_again_s`` until at least ``stored_copies`` holders acknowledged it.

Once enough holders acknowledged an item, it is *stored*: the caller may drop it from the
outbox (members who are away fetch it when they return; those online get the relayed copy,
and the end-to-end resend of section 12.6 covers what a relay lost).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Fallback", "FallbackSettings", "Place", "Relay", "Straggler"]


@dataclass(frozen=True)
class FallbackSettings:
    # An item owed to a member with a link gets this long from direct delivery alone: a busy
    # receiver acknowledges late, and relaying and placing everything it owes would only add
    # to its load (items owed to members without a link fall back at once).
    grace_s: float = 30.0
    relay_again_s: float = 150.0  # > the relay's 120 s seen window, or a repeat is ignored
    max_relays: int = 4
    place_again_s: float = 60.0
    stored_copies: int = 2  # of the 3 holders


@dataclass(frozen=True)
class Straggler:
    item_id: bytes
    envelope: bytes
    urgent: bool  # a commit, a Welcome, an invitation: no stem
    placeable: bool  # a channel envelope (invites have no mailbox key a recipient knows)


@dataclass(frozen=True)
class Relay:
    item_id: bytes
    envelope: bytes
    stem: bool


@dataclass(frozen=True)
class Place:
    item_id: bytes
    envelope: bytes


Effect = Relay | Place


@dataclass
class _State:
    relays: int = 0
    relayed_at: float = 0.0
    placing: bool = False
    placed_at: float | None = None
    stored: bool = False


class Fallback:
    def __init__(self, settings: FallbackSettings | None = None) -> None:
        self.settings = settings or FallbackSettings()
        self._items: dict[bytes, _State] = {}

    def due(self, stragglers: Iterable[Straggler], now: float) -> list[Effect]:
        s = self.settings
        effects: list[Effect] = []
        for item in stragglers:
            st = self._items.setdefault(item.item_id, _State())
            if st.stored:
                continue
            if st.relays == 0 or (st.relays < s.max_relays
                                  and now - st.relayed_at >= s.relay_again_s):
                st.relays += 1
                st.relayed_at = now
                effects.append(Relay(item.item_id, item.envelope, stem=not item.urgent))
            if item.placeable and not st.placing and (
                    st.placed_at is None or now - st.placed_at >= s.place_again_s):
                st.placing = True
                st.placed_at = now
                effects.append(Place(item.item_id, item.envelope))
        return effects

    def placed(self, item_id: bytes, holders: int) -> bool:
        """A placement finished with ``holders`` acknowledgements; True when the item is now
        stored (enough holders have it)."""
        st = self._items.get(item_id)
        if st is None:
            return False
        st.placing = False
        if holders >= self.settings.stored_copies:
            st.stored = True
        return st.stored

    def forget(self, item_id: bytes) -> None:
        """The item left the outbox."""
        self._items.pop(item_id, None)

    def statistics(self) -> dict[str, int]:
        return {
            "tracked": len(self._items),
            "placing": sum(st.placing for st in self._items.values()),
            "stored": sum(st.stored for st in self._items.values()),
        }
