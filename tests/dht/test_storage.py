from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dht.errors import RecordError
from dht.records import PeerRecord, record_key
from dht.storage import RecordStorage, StorageLimits, StoreResult, VerifyCache
from node.core.identity import Identity

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


IDS = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(40)]


def rec(i: int = 0, seq: int = 1, ttl: int = 3600, addrs: int = 1) -> PeerRecord:
    return PeerRecord.create(
        IDS[i],
        noise_static_key=b"\x01" * 32,
        envelope_key=b"\x02" * 32,
        addrs=[f"/ip4/10.0.0.{j}/tcp/4001" for j in range(addrs)],
        seq=seq,
        expires_at=int(NOW) + ttl,
    )


def store(s: RecordStorage, r: PeerRecord, source: str | None = "10.0.0.1") -> str:
    return s.put(r.key, r.encode(), source)


def test_store_and_read() -> None:
    s = RecordStorage(Clock())
    r = rec()
    assert store(s, r) == StoreResult.STORED
    assert s.get(r.key) == r.encode()
    assert s[r.key] == r.encode()
    v = s.get_verified(r.key)
    assert v is not None and v.peer_id == IDS[0].peer_id
    assert list(s) == [(r.key, r.encode())]
    assert s.statistics()["records"] == 1


def test_highest_seq_wins_and_replay_refused() -> None:
    s = RecordStorage(Clock())
    assert store(s, rec(seq=5)) == StoreResult.STORED
    assert store(s, rec(seq=5)) == StoreResult.DUPLICATE  # the same signed bytes: held
    assert store(s, rec(seq=5, addrs=2)) == StoreResult.REPLAY  # same seq, other content
    assert store(s, rec(seq=4)) == StoreResult.REPLAY
    assert store(s, rec(seq=6)) == StoreResult.STORED
    got = s.get_verified(record_key(IDS[0].peer_id))
    assert got is not None and got.seq == 6 and got.addrs == ("/ip4/10.0.0.0/tcp/4001",)
    assert s.statistics()["drops"] == {"duplicate": 1, "replayed_seq": 2}


def test_forged_wrong_key_malformed() -> None:
    s = RecordStorage(Clock())
    r = rec()
    forged = PeerRecord(**{**r.__dict__, "signature": bytes(64)})
    assert s.put(r.key, forged.encode(), "x") == StoreResult.INVALID
    assert s.put(record_key(IDS[1].peer_id), r.encode(), "x") == StoreResult.WRONG_KEY
    assert s.put(r.key, b"\x00" * 60_000, "x") == StoreResult.MALFORMED
    assert s.put(r.key, [1, 2], "x") == StoreResult.MALFORMED
    assert s.put(b"short", r.encode(), "x") == StoreResult.MALFORMED
    assert len(s) == 0
    drops = s.statistics()["drops"]
    assert drops == {"invalid": 1, "wrong_key": 1, "malformed": 3}


def test_expired_refused_and_dropped_on_read() -> None:
    clock = Clock()
    s = RecordStorage(clock)
    r = rec(ttl=10)
    assert store(s, r) == StoreResult.STORED
    clock.now += 10
    assert s.get(r.key) is None
    with pytest.raises(KeyError):
        s[r.key]
    assert len(s) == 0
    assert store(s, r) == StoreResult.INVALID
    # After expiry a lower sequence number may be stored again (the old one is gone).
    assert store(s, rec(seq=0, ttl=100)) == StoreResult.STORED


def test_quota_count_and_bytes() -> None:
    s = RecordStorage(Clock(), StorageLimits(max_records=3, max_per_source=100))
    results = [store(s, rec(i)) for i in range(5)]
    assert results.count(StoreResult.STORED) == 3
    assert results[3:] == [StoreResult.QUOTA] * 2
    # Updating an existing key is still allowed when the count quota is full.
    assert store(s, rec(0, seq=2)) == StoreResult.STORED
    size = len(rec(0).encode())
    s2 = RecordStorage(Clock(), StorageLimits(max_bytes=2 * size + 10, max_per_source=100))
    assert [store(s2, rec(i)) for i in range(3)][-1] == StoreResult.QUOTA
    assert s2.statistics()["bytes"] <= 2 * size + 10  # type: ignore[operator]


def test_per_source_limit() -> None:
    s = RecordStorage(Clock(), StorageLimits(max_per_source=4))
    got = [store(s, rec(i), "10.9.9.9") for i in range(10)]
    assert got.count(StoreResult.STORED) == 4
    assert got.count(StoreResult.SOURCE_QUOTA) == 6
    assert store(s, rec(20), "10.9.9.8") == StoreResult.STORED
    assert store(s, rec(21), None) == StoreResult.STORED  # our own: exempt
    # The same source may still update a record it already holds.
    assert store(s, rec(0, seq=2), "10.9.9.9") == StoreResult.STORED


def test_iter_older_than() -> None:
    clock = Clock()
    s = RecordStorage(clock)
    store(s, rec(0))
    clock.now += 100
    store(s, rec(1))
    assert [k for k, _ in s.iter_older_than(50)] == [rec(0).key]
    assert len(s.iter_older_than(0)) == 2


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1500), st.binary(min_size=20, max_size=20))
def test_random_values_never_stored(value: bytes, key: bytes) -> None:
    s = RecordStorage(Clock())
    assert s.put(key, value, "1.2.3.4") != StoreResult.STORED
    assert len(s) == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=12))
def test_seq_is_monotone(seqs: list[int]) -> None:
    s = RecordStorage(Clock())
    for q in seqs:
        store(s, rec(seq=q))
    got = s.get_verified(rec().key)
    assert got is not None and got.seq == max(seqs)


def test_reads_reuse_the_verification_but_still_check_expiry() -> None:
    clock = Clock()
    s = RecordStorage(clock)
    r = rec(ttl=100)
    assert store(s, r) == StoreResult.STORED
    misses = s.cache.misses
    for _ in range(5):
        assert s.get(r.key) == r.encode()
        assert s.get_verified(r.key) is not None
    assert s.cache.misses == misses  # no second Ed25519 verification for the same bytes
    assert s.cache.hits >= 10
    clock.now += 100  # expired: the cached verification does not outlive the record
    assert s.get(r.key) is None
    assert s.statistics()["drops"] == {"expired_on_read": 1}


def test_verify_cache_is_keyed_by_exact_bytes_and_key() -> None:
    cache = VerifyCache(max_entries=2)
    good = rec().encode()
    assert cache.verify(rec().key, good, NOW).peer_id == IDS[0].peer_id
    forged = good[:-1] + bytes([good[-1] ^ 1])  # flip a signature bit
    with pytest.raises(RecordError):
        cache.verify(rec().key, forged, NOW)
    with pytest.raises(RecordError):  # right bytes under another key
        cache.verify(rec(1).key, good, NOW)
    with pytest.raises(RecordError):
        cache.verify(rec().key, good, NOW + 3600)
    for i in range(1, 4):  # bounded
        cache.verify(rec(i).key, rec(i).encode(), NOW)
    assert len(cache._entries) == 2
