"""Members away at send time come back and read their mailboxes
(tests/node/network/mailbox_sim.py: the relay simulation plus every node's fallback, mailbox
holder and store). Small network, fixed seed: each test runs in a few seconds, the same way
every time (about 600 simulated seconds of relay heartbeats before anyone comes back)."""

from __future__ import annotations

from node.network.mailbox import DAY_S, PLACEMENT_K
from tests.node.network.gossip_sim import SimConfig
from tests.node.network.mailbox_sim import OfflineConfig, OfflineSimulation


def scenario(**changes: object) -> OfflineSimulation:
    config = OfflineConfig(sim=SimConfig(nodes=30, seed=21, loss=0.01), channels=4, members=5,
                           offline=0.3, rate=2.0, seconds=10.0, seed=21)
    sim = OfflineSimulation(config.__class__(**{**config.__dict__, **changes}))
    sim.run()
    return sim


def test_members_away_at_send_time_get_everything_once_back() -> None:
    sim = scenario()
    pairs = sim.pairs()
    away = [p for p in pairs if p.offline]
    online = [p for p in pairs if not p.offline]
    assert len(sim.away) == 9 and len(away) >= 20 and len(online) >= 20
    # Before anyone came back, every item had left its sender's outbox: acknowledged by the
    # members online, or stored at enough holders for those away.
    assert sim.counters["owed_at_quiet"] == 0
    assert sim.stored_copies and min(sim.stored_copies.values()) == PLACEMENT_K
    # Everything reached the members online, and, once back, every member that was away:
    # from the mailboxes (senders had long dropped the items, relays had forgotten them).
    assert all(p.delivered is not None for p in online)
    for p in away:
        assert p.delivered is not None and p.route == "mailbox"
        assert 0 <= p.delivered - p.since < 30.0  # keys read one after another
    # No key was missed: some of the nodes read held every key that held envelopes.
    assert sim.holders_read and 0 not in sim.holders_read
    # Absences spanned days: returning members read a key per channel per day missed.
    assert sim.counters["catch_up_keys"] > 2 * len(sim.away)
    assert sim.counters["mailbox_gap"] == 0


def test_away_longer_than_retention_gets_nothing_and_is_told() -> None:
    sim = scenario(away_s=(15 * DAY_S, 16 * DAY_S))
    away = [p for p in sim.pairs() if p.offline]
    assert away and all(p.delivered is None for p in away)
    assert sim.counters["mailbox_gap"] == len(sim.away)
    # The holders still had the envelopes until they expired: nothing was fetched.
    assert sim.counters["fetched"] == 0 and min(sim.stored_copies.values()) == PLACEMENT_K
