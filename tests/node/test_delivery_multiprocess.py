"""Delivery beyond direct links across separate `spacepanda run` processes (issue 9):
mailboxes for a member who is never online with the sender, relays for members that may not
link, and what a relay that is not a member saw and kept.

Every check waits for a condition (never a fixed sleep).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from node.core.identity import PeerId
from node.core.padding import is_envelope_size
from node.network.gossip_wire import PROTOCOL as GOSSIP
from node.network.gossip_wire import Publish, Stem, decode_frame
from node.network.mailbox_wire import PROTOCOL as MAILBOX
from node.network.mailbox_wire import Batch, Store, decode_mailbox
from tests.node.capture_node import read_capture
from tests.node.test_channels_multiprocess import AUTO, converged, start_mesh, texts, view
from tests.procs import Proc, procs, wait_until

__all__ = ["procs"]  # the fixture, used by name

Make = Callable[..., Proc]


def _port(p: Proc) -> int:
    return int(p.addr.split("/")[4])


def _mine(p: Proc, cid: str) -> dict[str, dict[str, object]]:
    """This node's own messages by text, with their delivery status."""
    page, _ = p.api.messages(cid, limit=1000)
    return {str(m["text"]): m["status"] for m in page if m["status"] is not None}


def test_sender_and_recipient_never_online_together(procs: Make) -> None:
    """(a) The recipient stops; the sender sends, sees each message stored at mailboxes, and
    stops; the recipient starts and reads everything from the mailboxes of non-members."""
    a, b, *others = start_mesh(procs, 5)
    cid = str(a.api.create_channel("apart")["channel_id"])
    a.api.invite(cid, b.peer_id)
    wait_until(lambda: converged([a, b], cid, {a.peer_id, b.peer_id}), 60, "2 members")
    b_port = _port(b)
    assert b.stop() == 0

    sent = [f"while you were away {i}" for i in range(5)]
    for text in sent:
        a.api.send(cid, text)
    # Nobody else is a member: "stored" means at least two non-member holders acknowledged.
    wait_until(lambda: all(s is not None and s["stored"] for t, s in _mine(a, cid).items()
                           if t in sent) and set(sent) <= set(_mine(a, cid)),
               60, "every message stored at mailboxes")
    assert a.stop() == 0

    b.start(port=b_port)  # from its address book: the sender is gone for good
    wait_until(lambda: [t for _, t in texts(b, cid) if t in sent] == sent, 90,
               "the recipient to collect every message from the mailboxes")
    got = [t for _, t in texts(b, cid)]
    assert len(got) == len(set(got)), "a message was shown twice"
    for p in (b, *others):
        assert p.stop() == 0


def test_members_that_may_not_link_talk_through_relays_that_learn_nothing(
    procs: Make, tmp_path: Path
) -> None:
    """(b) Two members whose configs forbid a link between them create a channel and talk
    through non-member relays. (d) Those relays recorded every payload they received: no
    canary, no group id, no member PeerId, no epoch number, only envelope sizes from the
    bucket set; their data dirs hold no canary or group id, and their mailbox rows name
    nobody."""
    captures = [tmp_path / f"relay{i}-capture.bin" for i in range(3)]

    def relay_proc(i: int) -> Proc:
        return procs(f"127.0.0.{i + 1}", module="tests.node.capture_node",
                     SPACEPANDA_TEST_CAPTURE=str(captures[i]), **AUTO)

    boot = relay_proc(0).start()
    relays = [boot] + [relay_proc(i).start(bootstrap=(boot.addr,)) for i in (1, 2)]
    a, b = procs("127.0.0.4", **AUTO), procs("127.0.0.5", **AUTO)
    a_id, b_id = a.init(), b.init()
    a.extra_env["SPACEPANDA_BLOCKED_PEERS"] = b_id
    b.extra_env["SPACEPANDA_BLOCKED_PEERS"] = a_id
    a.start(bootstrap=(boot.addr,))
    b.start(bootstrap=(boot.addr,))
    everyone = [*relays, a, b]
    relay_ids = {r.peer_id for r in relays}
    wait_until(lambda: relay_ids <= a.peers() & b.peers(), 60,
               "both members linked to the relays")

    cid = str(a.api.create_channel("apart but together")["channel_id"])
    a.api.invite(cid, b_id)
    wait_until(lambda: converged([a, b], cid, {a_id, b_id}), 90,
               "b invited and added through the relays")
    canary = "canary-5e1d0c2b-plaintext"
    a.api.send(cid, canary)
    b.api.send(cid, "reply through the relays")
    wait_until(lambda: canary in [t for _, t in texts(b, cid)], 60, "b to read the canary")
    wait_until(lambda: "reply through the relays" in [t for _, t in texts(a, cid)], 60,
               "a to read the reply")
    assert b_id not in a.peers() and a_id not in b.peers()
    # Nobody acknowledges what came through a relay: a's envelope also went to mailboxes.
    wait_until(lambda: bool(_mine(a, cid).get(canary, {}).get("stored")), 60,
               "the canary's envelope stored at mailboxes")
    epochs = range(int(view(a, cid)["epoch"]) + 1)  # type: ignore[call-overload]
    for p in everyone:
        assert p.stop() == 0

    records = [r for c in captures for r in read_capture(c)]
    envelopes: list[bytes] = []
    for protocol, payload in records:
        if protocol == GOSSIP:
            envelopes += [i.envelope for i in decode_frame(payload)
                          if isinstance(i, Publish | Stem)]
        elif protocol == MAILBOX:
            message = decode_mailbox(payload)
            if isinstance(message, Store):
                envelopes.append(message.envelope)
            elif isinstance(message, Batch):
                envelopes += [env for _, env in message.items]
    assert len(envelopes) >= 4, "the relay saw too little for the scan to mean anything"
    assert all(is_envelope_size(len(env)) for env in envelopes), \
        sorted({len(env) for env in envelopes})

    group_id = bytes.fromhex(cid)
    names = [PeerId.from_string(pid) for pid in (a_id, b_id)]
    secrets = [canary.encode(), group_id, *(n.binary for n in names), a_id.encode(),
               b_id.encode()]
    # (Lists of what was found, not `in` on megabytes: a failure message stays short.)
    wire = b"".join(payload for _, payload in records)
    assert [s for s in secrets if s in wire] == []
    # MLS puts a PrivateMessage's epoch in clear as a uint64: none may show.
    assert [e for e in epochs for env in envelopes if e.to_bytes(8, "big") in env] == []

    rows = []
    for relay in relays:
        files = [f for f in relay.data_dir.rglob("*") if f.is_file()]
        stored = b"".join(f.read_bytes() for f in files)
        assert [s for s in (canary.encode(), group_id) if s in stored] == []
        with sqlite3.connect(relay.data_dir / "node.db") as db:
            rows += db.execute("SELECT * FROM mailbox_entries").fetchall()
    assert rows, "the relays held no mailbox envelopes: the scan would prove nothing"
    held = b"".join(bytes(v) if isinstance(v, bytes) else str(v).encode()
                    for row in rows for v in row)
    assert [s for s in secrets if s in held] == []
