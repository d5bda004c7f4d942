"""The no-fork rule in memory: members, concurrent intents and commits, loss, reordering,
delay, partitions and frozen committers; every run must end converged (PROTOCOL.md 12)."""

from __future__ import annotations

import random

import pytest

from node.channels.content import IntentOp
from tests.node.channels.sim import Member, World


def _active(w: World) -> list[Member]:
    return [m for m in w.members.values() if m.channel is not None and m.channel.active]


def _assert_converged(w: World) -> None:
    views = {
        m.name: (m.channel.epoch, m.channel.fingerprint, tuple(sorted(m.channel.member_peers())))
        for m in _active(w)
        if m.channel is not None
    }
    assert len(set(views.values())) == 1, views
    # Every member of the agreed group holds it; nobody outside it thinks they are in.
    (_, _, members) = next(iter(views.values()))
    assert set(members) == {m.peer for m in _active(w)}


def _random_run(seed: int) -> World:
    r = random.Random(seed)
    w = World(seed, loss=r.choice([0.0, 0.1, 0.3]), delay=(0.01, r.choice([0.05, 0.5, 2.0])))
    ms = [w.add_member(f"m{i}") for i in range(6)]
    w.create(ms[0])
    for x in ms[1:4]:
        w.invite(ms[0], x)
    w.run(10)
    for _ in range(12):
        act = [m for m in _active(w) if m.channel is not None
               and m.channel.meta.status.value == "active"]
        m = r.choice(act)
        assert m.channel is not None
        admin = m.channel.is_admin(m.peer)
        outsiders = [x for x in ms if x.channel is None or not x.channel.active]
        others = [x for x in act if x is not m]
        op = r.random()
        if admin and op < 0.25 and outsiders:
            target = r.choice(outsiders)
            target.channel = None
            w.invite(m, target)
        elif admin and op < 0.4 and others:
            w.ask(m, IntentOp.REMOVE, r.choice(others))
        elif admin and op < 0.55 and others:
            w.ask(m, IntentOp.ADMIN, r.choice(others))
        elif op < 0.6 and len(act) > 2:
            w.ask(m, IntentOp.LEAVE)
        else:
            w.say(m, f"{m.name} says {r.random():.6f}")
        if r.random() < 0.2:
            r.choice(ms).online = False  # frozen: no ticks, no sends, no receipts
        if r.random() < 0.3:
            src = r.choice(ms)
            for x in ms:
                if r.random() < 0.7:
                    w.cut.add((src.peer, x.peer))  # a partition: src's packets to x are lost
        elif r.random() < 0.4:
            w.cut.clear()
        w.run(r.choice([0.1, 1, 5, 12, 25]))
        for x in ms:
            if r.random() < 0.3:
                x.online = True
    for x in ms:
        x.online = True
    w.loss = 0.0
    w.cut.clear()
    w.run(120)
    return w


@pytest.mark.parametrize("seed", range(40))
def test_random_runs_converge(seed: int) -> None:
    _assert_converged(_random_run(seed))


def test_frozen_committer_loses_to_the_backup_branch_and_everyone_follows() -> None:
    """The designated committer publishes a commit nobody receives and freezes; a backup
    commits after its delay; when the frozen one returns, R6 picks one branch everywhere,
    and messages sent on the losing branch are sent again (R7)."""
    w = World(7)
    a, b, c, d, e = (w.add_member(n) for n in ("alice", "bob", "carol", "dave", "erin"))
    w.create(a)
    for x in (b, c, d):
        w.invite(a, x)
    w.run(10)
    w.ask(a, IntentOp.ADMIN, b)
    w.run(10)
    assert a.channel is not None
    designated, backup = (w.members[p] for p in a.channel.committers())
    for m in (a, b, c, d, e):
        w.cut.add((designated.peer, m.peer))
    w.invite(designated, e)
    w.run(0.5)
    assert designated.channel is not None and designated.channel.meta.pending_commit
    designated.online = False
    w.cut.clear()
    w.ask(backup, IntentOp.REMOVE, c)
    w.run(25)
    w.say(backup, "sent while the designated committer was frozen")
    w.run(2)
    designated.online = True
    w.run(40)
    _assert_converged(w)
    assert c.channel is not None and not c.channel.active
    assert e.channel is not None and e.channel.active  # the frozen admin's invite survived
    for m in _active(w):
        if m is not backup and m is not e:  # the author, and erin who joined after it
            assert "sent while the designated committer was frozen" in [t for _, t in m.texts]


def test_strong_removal_beats_the_removed_admins_concurrent_commit() -> None:
    w = World(11)
    a, b, c = (w.add_member(n) for n in ("alice", "bob", "carol"))
    w.create(a)
    w.invite(a, b)
    w.invite(a, c)
    w.run(10)
    w.ask(a, IntentOp.ADMIN, b)
    w.run(10)
    # Partition alice and bob from each other; each commits on the same epoch: alice removes
    # bob, bob adds nothing but removes carol.
    w.cut |= {(a.peer, b.peer), (b.peer, a.peer)}
    w.ask(a, IntentOp.REMOVE, b)
    w.ask(b, IntentOp.REMOVE, c)
    w.run(30)
    w.cut.clear()
    w.run(60)
    _assert_converged(w)
    # Bob's branch is authored by a member alice's branch removes: alice's wins.
    assert b.channel is not None and not b.channel.active
    assert c.channel is not None and c.channel.active


def test_member_offline_for_three_epochs_catches_up() -> None:
    w = World(5)
    a, b, c, d, e, f = (w.add_member(n) for n in ("alice", "bob", "carol", "dave", "erin",
                                                  "frank"))
    w.create(a)
    w.invite(a, b)
    w.invite(a, c)
    w.run(10)
    c.online = False
    for joiner in (d, e, f):
        w.invite(a, joiner)
        w.run(5)
        w.say(a, f"welcome {joiner.name}")
        w.run(2)
    assert a.channel is not None and c.channel is not None
    assert a.channel.epoch - c.channel.epoch >= 3
    c.online = True
    w.run(30)
    _assert_converged(w)
    assert [t for _, t in c.texts if t.startswith("welcome")] == [
        "welcome dave", "welcome erin", "welcome frank"
    ]
