"""transcript-hashes.json (all seven suites, byte exact) and confirmation-tag checks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import transcript
from mls.codec import encode_varint
from mls.crypto import SUITES, get_suite
from mls.errors import CryptoError, DecodeError, MlsError, ValidationError
from mls.messages.commit import Commit
from mls.messages.common import WireFormat
from mls.messages.framing import (
    AuthenticatedContent,
    FramedContent,
    FramedContentAuthData,
    Sender,
)
from tests.vectors import case_id, load_vectors, vector_params

h = bytes.fromhex


VECTOR = "mls/transcript-hashes.json"


@pytest.mark.parametrize("case", vector_params(VECTOR, case_id, suite_key="cipher_suite"))
def test_transcript_vector(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    raw = h(case["authenticated_content"])
    ac = AuthenticatedContent.from_bytes(raw)
    assert ac.to_bytes() == raw
    key = h(case["confirmation_key"])
    before = h(case["interim_transcript_hash_before"])

    hashes = transcript.next_hashes(suite, before, ac, key)
    assert hashes.confirmed == h(case["confirmed_transcript_hash_after"])
    assert hashes.interim == h(case["interim_transcript_hash_after"])

    # The pieces agree with the one-step update.
    confirmed = transcript.confirmed_hash(
        suite, before, ac.wire_format, ac.content, ac.auth.signature
    )
    assert confirmed == hashes.confirmed
    assert transcript.confirmation_tag(suite, key, confirmed) == ac.auth.confirmation_tag
    assert ac.auth.confirmation_tag is not None
    assert transcript.interim_hash(suite, confirmed, ac.auth.confirmation_tag) == hashes.interim


def test_vector_counts() -> None:
    cases = load_vectors(VECTOR)
    assert sorted(c["cipher_suite"] for c in cases) == sorted(SUITES) == [1, 2, 3, 4, 5, 6, 7]


def _vector(suite_id: int) -> dict[str, Any]:
    cases: list[dict[str, Any]] = load_vectors(VECTOR)
    for case in cases:
        if case["cipher_suite"] == suite_id:
            return case
    pytest.skip(f"no suite {suite_id} case in {VECTOR}")


SUITE_IDS = pytest.mark.parametrize("suite_id", sorted(SUITES), ids=lambda s: f"suite{s}")


@SUITE_IDS
def test_wrong_key_or_tag_is_crypto_error(suite_id: int) -> None:
    case = _vector(suite_id)
    suite = get_suite(suite_id)
    ac = AuthenticatedContent.from_bytes(h(case["authenticated_content"]))
    before = h(case["interim_transcript_hash_before"])
    key = h(case["confirmation_key"])
    with pytest.raises(CryptoError):
        transcript.next_hashes(suite, before, ac, bytes(len(key)))
    with pytest.raises(CryptoError):
        transcript.next_hashes(suite, bytes(len(before)), ac, key)
    tag = ac.auth.confirmation_tag
    assert tag is not None
    forged = replace(ac, auth=FramedContentAuthData(ac.auth.signature, bytes(len(tag))))
    with pytest.raises(CryptoError):
        transcript.next_hashes(suite, before, forged, key)
    # Without the key nothing is checked, and the hash still changes with the tag.
    assert (
        transcript.next_hashes(suite, before, forged).interim
        != transcript.next_hashes(suite, before, ac).interim
    )


def test_only_commits_enter_the_transcript() -> None:
    suite = get_suite(1)
    fc = FramedContent(b"g", 1, Sender.member(0), b"", b"app")
    ac = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, fc, FramedContentAuthData(b"s"))
    with pytest.raises(ValidationError):
        transcript.next_hashes(suite, b"", ac)
    with pytest.raises(ValueError):
        transcript.confirmed_hash(suite, b"", ac.wire_format, fc, b"s")


@SUITE_IDS
def test_initial_hashes(suite_id: int) -> None:
    suite = get_suite(suite_id)
    key = bytes(range(suite.nh))
    init = transcript.initial(suite, key)
    assert init.confirmed == b""
    tag = suite.mac(key, b"")
    assert init.interim == suite.hash(encode_varint(len(tag)) + tag)  # 2 bytes for 64
    # Chain one commit from epoch 0 and check it against a from-scratch computation.
    fc = FramedContent(b"g", 0, Sender.member(0), b"", Commit())
    sig = b"\x07" * 64
    confirmed = transcript.confirmed_hash(suite, init.interim, WireFormat.PUBLIC_MESSAGE, fc, sig)
    expected = suite.hash(
        init.interim
        + (1).to_bytes(2, "big")
        + fc.to_bytes()
        + b"\x40\x40"
        + sig  # varint 64 takes two bytes
    )
    assert confirmed == expected


@SUITE_IDS
@settings(max_examples=200, deadline=None)
@given(pos=st.integers(min_value=0, max_value=10_000), mask=st.integers(1, 255))
def test_tampered_commit_never_confirms(suite_id: int, pos: int, mask: int) -> None:
    """Any flipped bit in the commit's AuthenticatedContent: a typed error, never success."""
    case = _vector(suite_id)
    suite = get_suite(suite_id)
    raw = bytearray(h(case["authenticated_content"]))
    raw[pos % len(raw)] ^= mask
    before = h(case["interim_transcript_hash_before"])
    with pytest.raises(MlsError) as info:
        ac = AuthenticatedContent.from_bytes(bytes(raw))
        transcript.next_hashes(suite, before, ac, h(case["confirmation_key"]))
    assert isinstance(info.value, CryptoError | ValidationError | DecodeError)
