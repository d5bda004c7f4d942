"""Fork detection and repair (PROTOCOL.md 12.7): a member left on a state nobody else has is
found by its epoch check and re-added by an admin; one in step or merely behind is not."""

from __future__ import annotations

from node.channels.content import IntentOp
from tests.node.channels.mnet import Net


def _channel(net: Net, n: int) -> tuple[bytes, list]:  # type: ignore[type-arg]
    admin = net.add()
    others = [net.add() for _ in range(n - 1)]
    cid = admin.create_channel("repair", net.now).channel_id
    assert cid is not None
    for m in others:
        net.apply(admin, admin.invite(cid, m.me, m.envelope_public, net.now))
    net.flush()
    net.run(5)
    assert all(cid in m.channels for m in others)
    return cid, [admin, *others]


def test_a_member_stranded_past_the_window_is_re_added() -> None:
    net = Net(1)
    cid, (a, b, c) = _channel(net, 3)
    for m in (a, b, c):
        m.check_every_s = 20.0
    net.online[c.me] = False
    for _ in range(7):  # more epochs than the window, while c is away...
        net.apply(a, a._ask(a.channel(cid), IntentOp.ADMIN, net.now, target=b.me))
        net.run(3)
    assert net.drop_queued(c.me) > 0  # ...and everything owed to c is lost
    net.online[c.me] = True
    stranded = c.channels[cid].epoch
    assert stranded < a.channels[cid].epoch
    net.run(20 * 3 + 10 * 60)  # checks, then the stuck rule (the same report 4 min later)
    assert len(net.states(cid, [a.me, b.me, c.me])) == 1
    assert c.channels[cid].active and c.channels[cid].epoch > stranded
    assert any(kind == "repair" for _, kind, _ in net.notices)
    net.apply(a, a.send_text(cid, "after the repair", net.now))
    net.flush()
    assert c.channel(cid).meta.sender_seq.get(a.me, 0) > 0


def test_members_in_step_or_catching_up_are_left_alone() -> None:
    net = Net(2)
    cid, (a, b, c) = _channel(net, 3)
    for m in (a, b, c):
        m.check_every_s = 20.0
    net.run(200)
    assert not any(kind == "repair" for _, kind, _ in net.notices)
    assert len(net.states(cid, [a.me, b.me, c.me])) == 1
