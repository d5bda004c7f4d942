"""Channels across separate `spacepanda run` processes over real sockets, through the API.

Every check waits for a condition (never a fixed sleep): members converge on one epoch and
member list, and read each other, whatever the interleaving of processes and timers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api.client import ApiError
from tests.procs import Proc, procs, wait_until

__all__ = ["procs"]  # the fixture, used by name

Make = Callable[..., Proc]
AUTO = {"SPACEPANDA_AUTO_ACCEPT_INVITES": "true"}


def start_mesh(make: Make, n: int, *, auto: bool = True) -> list[Proc]:
    env = AUTO if auto else {}
    boot = make("127.0.0.1", **env).start()
    nodes = [boot] + [make(f"127.0.0.{i + 1}", **env).start(bootstrap=(boot.addr,))
                      for i in range(1, n)]
    wait_until(lambda: all(_ready(p) for p in nodes), 60, "every node to join the DHT")
    return nodes


def _ready(p: Proc) -> bool:
    try:
        p.api.request("GET", "/readyz")
    except ApiError:
        return False
    return True


def view(p: Proc, cid: str) -> dict[str, object]:
    return p.api.channel(cid)


def members(p: Proc, cid: str) -> set[str]:
    try:
        v = view(p, cid)
    except ApiError:
        return set()
    if v["status"] != "active":
        return set()
    return {str(m["peer_id"]) for m in v["members"]}  # type: ignore[attr-defined]


def state(p: Proc, cid: str) -> tuple[object, object, frozenset[str]]:
    v = view(p, cid)
    return v["epoch"], v["epoch_fingerprint"], frozenset(members(p, cid))


def converged(nodes: list[Proc], cid: str, expected: set[str]) -> bool:
    try:
        states = {state(p, cid) for p in nodes}
    except ApiError:
        return False
    return len(states) == 1 and set(next(iter(states))[2]) == expected


def _display_name(p: Proc, cid: str, peer_id: str) -> str:
    found = [m for m in view(p, cid)["members"] if m["peer_id"] == peer_id]  # type: ignore[attr-defined]
    return str(found[0]["display_name"]) if found else ""


def texts(p: Proc, cid: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    after = "0"
    while True:
        page, nxt = p.api.messages(cid, after=after, limit=1000)
        out += [(str(m["sender"]), str(m["text"])) for m in page]
        if nxt == after:
            return out
        after = nxt


def invite_all(admin: Proc, cid: str, others: list[Proc]) -> None:
    for p in others:
        admin.api.invite(cid, p.peer_id)


def test_create_invite_accept_decline_send_remove_leave(procs: Make) -> None:
    a, b, c, d, e = start_mesh(procs, 5, auto=False)
    cid = str(a.api.create_channel("general")["channel_id"])
    a.api.set_profile("alice")
    b.api.set_profile("bob")
    invite_all(a, cid, [b, c, d, e])
    for p in (b, c, d, e):
        wait_until(lambda p=p: len(p.api.invites()) == 1, 20, "the invite to arrive")
    # Consent: nothing happens until the invitee says yes; c says no.
    assert members(b, cid) == set()
    for p in (b, d, e):
        p.api.accept_invite(p.api.invites()[0]["invite_id"])
    c.api.decline_invite(c.api.invites()[0]["invite_id"])
    everyone = [a, b, d, e]
    ids = {p.peer_id for p in everyone}
    wait_until(lambda: converged(everyone, cid, ids), 60, "four members in one epoch")
    assert c.api.invites() == [] and members(c, cid) == set()
    for p in everyone:
        for i in range(3):
            p.api.send(cid, f"{p.peer_id[:10]} message {i}")
    expected = sorted((p.peer_id, f"{p.peer_id[:10]} message {i}")
                      for p in everyone for i in range(3))
    for p in everyone:
        wait_until(lambda p=p: sorted(texts(p, cid)) == expected, 30, "every message, everywhere")
        # Each sender's messages in the order it sent them.
        for sender in everyone:
            mine = [t for s, t in texts(p, cid) if s == sender.peer_id]
            assert mine == [f"{sender.peer_id[:10]} message {i}" for i in range(3)]
    wait_until(lambda: _display_name(d, cid, b.peer_id) == "bob", 20,
               "b's display name to reach d")
    # Remove e: it reads nothing sent afterwards.
    a.api.remove_member(cid, e.peer_id)
    rest = [a, b, d]
    wait_until(lambda: converged(rest, cid, {p.peer_id for p in rest}), 60, "e removed")
    wait_until(lambda: view(e, cid)["status"] == "removed", 30, "e to learn it was removed")
    seen_by_e = len(texts(e, cid))
    a.api.send(cid, "after e left")
    wait_until(lambda: ("" if not texts(d, cid) else texts(d, cid)[-1][1]) == "after e left",
               30, "d to read the message")
    assert len(texts(e, cid)) == seen_by_e
    try:
        e.api.send(cid, "let me in")
        raise AssertionError("a removed member could send")
    except ApiError as exc:
        assert exc.status == 409
    # b leaves on its own.
    b.api.leave(cid)
    rest = [a, d]
    wait_until(lambda: converged(rest, cid, {a.peer_id, d.peer_id}), 60, "b to have left")
    wait_until(lambda: view(b, cid)["status"] == "removed", 30, "b to see it has left")
    for p in (a, b, c, d, e):
        assert p.stop() == 0


def test_two_admins_change_membership_at_the_same_moment(procs: Make) -> None:
    a, b, c, d, e = start_mesh(procs, 5)
    cid = str(a.api.create_channel("busy")["channel_id"])
    invite_all(a, cid, [b, c, d])
    group = [a, b, c, d]
    wait_until(lambda: converged(group, cid, {p.peer_id for p in group}), 60, "4 members")
    a.api.make_admin(cid, b.peer_id)
    wait_until(lambda: len(view(a, cid)["committers"]) == 2, 30, "b to be an admin")  # type: ignore[arg-type]
    # At the same moment: a invites e, b removes c.
    a.api.invite(cid, e.peer_id)
    b.api.remove_member(cid, c.peer_id)
    final = [a, b, d, e]
    wait_until(lambda: converged(final, cid, {p.peer_id for p in final}), 90,
               "one epoch with e in and c out")
    for p in final:
        p.api.send(cid, f"hello from {p.peer_id[:10]}")
    for p in final:
        wait_until(lambda p=p: len([t for _, t in texts(p, cid) if t.startswith("hello")]) == 4,
                   30, "every member to read the others")
    for p in (a, b, c, d, e):
        assert p.stop() == 0


def _frozen_committer_round(procs: Make, freeze_after_s: float) -> None:
    a, b, c, d = start_mesh(procs, 4)
    cid = str(a.api.create_channel("frozen")["channel_id"])
    invite_all(a, cid, [b, c])
    group = [a, b, c]
    wait_until(lambda: converged(group, cid, {p.peer_id for p in group}), 60, "3 members")
    a.api.make_admin(cid, b.peer_id)
    wait_until(lambda: len(view(a, cid)["committers"]) == 2, 30, "b to be an admin")  # type: ignore[arg-type]
    by_id = {p.peer_id: p for p in group}
    designated = by_id[str(view(a, cid)["committers"][0])]  # type: ignore[index]
    other = b if designated is a else a
    # The other admin invites d; the designated committer gets frozen partway through.
    other.api.invite(cid, d.peer_id)
    time.sleep(freeze_after_s)  # where in the commit flow the freeze lands (any is fine)
    designated.freeze()
    try:
        # The backup commits after its delay; the members still running move on.
        wait_until(lambda: d.peer_id in members(other, cid), 60, "the backup to add d")
        other.api.send(cid, "while the committer was frozen")
    finally:
        designated.thaw()
    final = [a, b, c, d]
    wait_until(lambda: converged(final, cid, {p.peer_id for p in final}), 90,
               "everyone, the thawed committer included, in one epoch")
    for p in final:
        if p is not other:
            wait_until(lambda p=p: "while the committer was frozen" in
                       [t for _, t in texts(p, cid)], 30, "the message sent during the freeze")
    for p in final:
        assert p.stop() == 0


@pytest.mark.parametrize("freeze_after_s", [0.0, 1.2])
def test_admin_frozen_mid_commit_then_resumed(procs: Make, freeze_after_s: float) -> None:
    # 0 s: frozen before it can commit; 1.2 s: while its commit is published, not merged.
    _frozen_committer_round(procs, freeze_after_s)


def test_member_offline_for_three_epochs_catches_up(procs: Make) -> None:
    a, b, c, d, e, f = start_mesh(procs, 6)
    cid = str(a.api.create_channel("away")["channel_id"])
    invite_all(a, cid, [b, c])
    group = [a, b, c]
    wait_until(lambda: converged(group, cid, {p.peer_id for p in group}), 60, "3 members")
    c_port = int(c.addr.split("/")[4])
    before = view(c, cid)["epoch"]
    assert c.stop() == 0
    for joiner in (d, e, f):
        a.api.invite(cid, joiner.peer_id)
        wait_until(lambda j=joiner: j.peer_id in members(a, cid), 60, "the joiner to be added")
        a.api.send(cid, f"welcome {joiner.peer_id[:10]}")
    assert int(view(a, cid)["epoch"]) - int(before) >= 3  # type: ignore[call-overload]
    c.start(port=c_port)
    final = [a, b, c, d, e, f]
    wait_until(lambda: converged(final, cid, {p.peer_id for p in final}), 90,
               "c to catch up three epochs")
    want = [f"welcome {j.peer_id[:10]}" for j in (d, e, f)]
    wait_until(lambda: [t for _, t in texts(c, cid) if t.startswith("welcome")] == want, 30,
               "c to read what was said while it was away")
    for p in final:
        assert p.stop() == 0


def test_kill_9_of_sender_and_receiver_loses_nothing_acknowledged(procs: Make) -> None:
    a, b = start_mesh(procs, 2)
    cid = str(a.api.create_channel("durable")["channel_id"])
    a.api.invite(cid, b.peer_id)
    wait_until(lambda: converged([a, b], cid, {a.peer_id, b.peer_id}), 60, "2 members")
    a_port, b_port = int(a.addr.split("/")[4]), int(b.addr.split("/")[4])
    acknowledged: list[str] = []
    for i in range(500):
        if i == 150:
            b.kill()  # the receiver dies mid-stream...
        if i == 220:
            b.start(port=b_port)  # ...and comes back
        if i == 330:
            a.kill()  # the sender dies mid-stream
            a.start(port=a_port)
        text = f"m{i:03d}"
        try:
            a.api.send(cid, text)
            acknowledged.append(text)
        except ApiError:
            pass  # not acknowledged: it may or may not arrive, but never twice
    def received() -> list[str]:
        return [t for _, t in texts(b, cid)]

    wait_until(lambda: set(acknowledged) <= set(received()), 90,
               "every acknowledged message at the receiver")
    got = received()
    assert len(got) == len(set(got)), "a message was delivered twice"
    assert [t for t in got if t in set(acknowledged)] == acknowledged  # in the order sent
    assert a.stop() == 0 and b.stop() == 0


def test_a_non_member_holds_no_plaintext(procs: Make, tmp_path: Path) -> None:
    a, b, outsider = start_mesh(procs, 3)
    cid = str(a.api.create_channel("secret")["channel_id"])
    a.api.invite(cid, b.peer_id)
    wait_until(lambda: converged([a, b], cid, {a.peer_id, b.peer_id}), 60, "2 members")
    canary = "canary-7f3a9c1e-plaintext"
    a.api.send(cid, canary)
    wait_until(lambda: canary in [t for _, t in texts(b, cid)], 30, "b to read the canary")
    for p in (a, b, outsider):
        assert p.stop() == 0
    blobs = b"".join(f.read_bytes() for f in outsider.data_dir.rglob("*") if f.is_file())
    assert canary.encode() not in blobs
    assert bytes.fromhex(cid) not in blobs  # not even the group id
    members_blob = b"".join(f.read_bytes() for f in b.data_dir.rglob("*") if f.is_file())
    assert canary.encode() in members_blob  # the member does have it (so the scan is real)
