"""The mailbox core (node/network/mailbox.py): keys, admission rules, fetch replies."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import pytest

from node.core.identity import PeerId
from node.network.mailbox import (
    DAY_S,
    Append,
    Appended,
    Mailbox,
    MailboxSettings,
    Page,
    Read,
    Usage,
    check_batch,
    day_of,
    envelope_digest,
    fetch_days,
    mailbox_key,
    uploader_pseudonym,
)
from node.network.mailbox_wire import (
    BATCH_OVERHEAD,
    ITEM_OVERHEAD,
    MAX_MESSAGE,
    Batch,
    Fetch,
    MailboxWireError,
    Status,
    Store,
    Stored,
)

P1, P2 = (PeerId.from_public_key(bytes((i,)) * 32) for i in (1, 2))
KEY = bytes(range(20))
DAY = 20_000
NOW = DAY * DAY_S + 3600.0
ENV = b"\x01" + bytes(511)
SECRET = bytes(range(32))
U1, U2 = (uploader_pseudonym(SECRET, p) for p in (P1, P2))


def test_mailbox_key_known_answer() -> None:
    tag_key = bytes(range(32))
    day_tag = hmac.new(tag_key, b"spacepanda/v1/mailbox-day" + (19_999).to_bytes(4, "big"),
                       hashlib.sha256).digest()
    expected = hashlib.sha256(b"sp/mbx" + day_tag).digest()[:20]
    assert mailbox_key(tag_key, 19_999) == expected
    assert mailbox_key(tag_key, 19_999).hex() == expected.hex()
    assert len(expected) == 20


def test_mailbox_key_vector_in_the_docs() -> None:
    # docs/PROTOCOL.md section 15.1
    key = mailbox_key(bytes(range(32)), 20000)
    assert key.hex() == "f7aadfba5ebba683ded048e6952ac6ea3dd68f76"


def test_mailbox_keys_differ_by_day_and_tag_key() -> None:
    a, b = bytes(32), b"\x01" * 32
    keys = {mailbox_key(k, d) for k in (a, b) for d in (1, 2, 3)}
    assert len(keys) == 6


@pytest.mark.parametrize("args", [(b"", 1), ("k", 1), (b"k", -1), (b"k", 1 << 32),
                                  (b"k", True), (b"k", 1.0)])
def test_mailbox_key_refuses_bad_arguments(args: tuple[object, object]) -> None:
    with pytest.raises(ValueError):
        mailbox_key(*args)  # type: ignore[arg-type]


def test_days() -> None:
    assert day_of(0) == 0 and day_of(DAY_S - 0.001) == 0 and day_of(DAY_S) == 1
    assert day_of(NOW) == DAY
    # Away since yesterday evening: yesterday and today.
    assert fetch_days(NOW - 20 * 3600, NOW) == [DAY - 1, DAY]
    assert fetch_days(NOW, NOW) == [DAY]
    # Away for a month: only what is still retained (14 days back, and today).
    assert fetch_days(NOW - 30 * DAY_S, NOW) == list(range(DAY - 14, DAY + 1))


@pytest.mark.parametrize("kw", [{"key_envelopes": 0}, {"total_bytes": -1}, {"day_skew": -1},
                                {"day_skew": 15}, {"store_rate": 0.0}, {"retention_days": True}])
def test_settings_are_checked(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MailboxSettings(**kw)  # type: ignore[arg-type]


def test_a_good_store_becomes_an_entry_that_expires_14_days_after_its_day() -> None:
    m = Mailbox()
    out = m.on_store(P1, U1, Store(1, KEY, DAY, ENV), NOW)
    assert isinstance(out, Append)
    e = out.entry
    assert (e.key, e.uploader, e.envelope, e.stored_at) == (KEY, U1, ENV, NOW)
    assert e.digest == hashlib.sha256(ENV).digest() == envelope_digest(ENV)
    assert e.expires_at == (DAY + 15) * DAY_S and e.size == 512
    assert "envelope" not in repr(e)  # a held envelope is never logged whole


def test_an_uploader_pseudonym_is_a_keyed_hash_of_its_peer_id() -> None:
    assert hmac.digest(SECRET, P1.binary, "sha256")[:16] == U1
    assert len(U1) == 16 and U1 != U2
    # Another holder (another secret) gives the same uploader another name.
    assert uploader_pseudonym(bytes(32), P1) != U1
    assert uploader_pseudonym(bytes(range(32)), P1) == U1


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33), "x" * 32])
def test_an_uploader_pseudonym_needs_a_32_byte_secret(secret: object) -> None:
    with pytest.raises(ValueError):
        uploader_pseudonym(secret, P1)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 511, 513, 1024, 32769])
def test_only_envelope_sizes_are_stored(size: int) -> None:
    out = Mailbox().on_store(P1, U1, Store(1, KEY, DAY, b"\x01" * size), NOW)
    assert out == Stored(1, Status.BAD_SIZE, 0)


@pytest.mark.parametrize(("day", "ok"), [(DAY - 2, False), (DAY - 1, True), (DAY, True),
                                         (DAY + 1, True), (DAY + 2, False), (0, False)])
def test_days_outside_the_window_are_expired(day: int, ok: bool) -> None:
    out = Mailbox().on_store(P1, U1, Store(1, KEY, day, ENV), NOW)
    assert isinstance(out, Append) if ok else out == Stored(1, Status.EXPIRED, 0)


def test_rate_per_uploader_in_envelopes() -> None:
    m = Mailbox(MailboxSettings(store_rate=1.0, store_burst=3.0))
    outs = [m.on_store(P1, U1, Store(i, KEY, DAY, ENV), NOW) for i in range(4)]
    assert [isinstance(o, Append) for o in outs] == [True, True, True, False]
    assert outs[3] == Stored(3, Status.RATE_LIMITED, 0)
    # Another uploader has its own bucket; the first gets a token back after a second.
    assert isinstance(m.on_store(P2, U2, Store(9, KEY, DAY, ENV), NOW), Append)
    assert isinstance(m.on_store(P1, U1, Store(5, KEY, DAY, ENV), NOW + 1.0), Append)
    assert m.statistics()["refused_rate_limited"] == 1


def test_rate_per_uploader_in_bytes() -> None:
    m = Mailbox(MailboxSettings(store_byte_rate=512.0, store_byte_burst=2048.0))
    big = b"\x01" * 2048
    assert isinstance(m.on_store(P1, U1, Store(1, KEY, DAY, big), NOW), Append)
    assert m.on_store(P1, U1, Store(2, KEY, DAY, ENV), NOW) == Stored(2, Status.RATE_LIMITED, 0)
    assert isinstance(m.on_store(P1, U1, Store(3, KEY, DAY, ENV), NOW + 1.0), Append)


def test_admit_checks_each_quota() -> None:
    s = MailboxSettings(key_envelopes=2, key_bytes=1024, uploader_envelopes=3,
                        uploader_bytes=2048, total_envelopes=4, total_bytes=4096)
    m = Mailbox(s)
    assert m.admit(Usage(), 512) == Status.OK
    assert m.admit(Usage(1, 512, 1, 512, 1, 512), 512) == Status.OK
    assert m.admit(Usage(2, 512, 2, 512, 2, 512), 512) == Status.KEY_FULL
    assert m.admit(Usage(1, 600, 1, 600, 1, 600), 512) == Status.KEY_FULL
    assert m.admit(Usage(0, 0, 3, 512, 3, 512), 512) == Status.UPLOADER_FULL
    assert m.admit(Usage(0, 0, 1, 1600, 1, 1600), 512) == Status.UPLOADER_FULL
    assert m.admit(Usage(0, 0, 0, 0, 4, 512), 512) == Status.HOLDER_FULL
    assert m.admit(Usage(0, 0, 0, 0, 1, 3700), 512) == Status.HOLDER_FULL


def test_store_results_become_replies() -> None:
    m = Mailbox()
    req = Store(4, KEY, DAY, ENV)
    assert m.stored(req, Appended(Status.OK, 7)) == Stored(4, Status.OK, 7)
    assert m.stored(req, Appended(Status.DUPLICATE, 7)) == Stored(4, Status.DUPLICATE, 7)
    assert m.stored(req, Appended(Status.KEY_FULL)) == Stored(4, Status.KEY_FULL, 0)
    assert m.unavailable(req) == Stored(4, Status.UNAVAILABLE, 0)
    stats = m.statistics()
    assert (stats["stored"], stats["duplicates"], stats["refused_key_full"]) == (1, 1, 1)


def test_fetch_reads_within_one_message_and_pages() -> None:
    m = Mailbox()
    req = Fetch(5, KEY, 10, 100)
    read = m.on_fetch(P2, req, NOW)
    assert isinstance(read, Read) and read.request == req
    assert read.max_bytes == MAX_MESSAGE - BATCH_OVERHEAD - 100 * ITEM_OVERHEAD
    page = Page(((11, ENV), (14, ENV)), True)
    assert m.batch(read, page) == Batch(5, Status.OK, page.items, 14, True)
    # Nothing new: the cursor stays where it was.
    assert m.batch(read, Page((), False)) == Batch(5, Status.OK, (), 10, False)
    assert m.unavailable(req) == Batch(5, Status.UNAVAILABLE, (), 0, False)


def test_fetch_rate_per_fetcher() -> None:
    m = Mailbox(MailboxSettings(fetch_rate=1.0, fetch_burst=2.0))
    outs = [m.on_fetch(P2, Fetch(i, KEY, 0, 1), NOW) for i in range(3)]
    assert outs[2] == Batch(2, Status.RATE_LIMITED, (), 0, False)
    assert isinstance(m.on_fetch(P1, Fetch(9, KEY, 0, 1), NOW), Read)


def test_check_batch_accepts_a_good_reply() -> None:
    req = Fetch(5, KEY, 10, 2)
    good = Batch(5, Status.OK, ((11, ENV), (12, ENV)), 12, True)
    assert check_batch(req, good) is good
    refused = Batch(5, Status.RATE_LIMITED, (), 0, False)
    assert check_batch(req, refused) is refused


@pytest.mark.parametrize(
    "reply",
    [
        Batch(6, Status.OK, (), 10, False),  # another request
        Batch(5, Status.OK, ((11, ENV), (12, ENV), (13, ENV)), 13, False),  # over the limit
        Batch(5, Status.OK, ((10, ENV),), 10, False),  # not after the cursor
        Batch(5, Status.OK, (), 9, False),  # cursor moved back
        Batch(5, Status.OK, ((11, b"\x01" * 100),), 11, False),  # not an envelope size
    ],
)
def test_check_batch_refuses_a_bad_reply(reply: Batch) -> None:
    with pytest.raises(MailboxWireError):
        check_batch(Fetch(5, KEY, 10, 2), reply)


def test_settings_replace_keeps_checks() -> None:
    with pytest.raises(ValueError):
        replace(MailboxSettings(), key_bytes=0)
