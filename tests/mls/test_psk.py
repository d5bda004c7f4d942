"""psk_secret.json for all seven suites, plus PreSharedKeyID encodings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from mls.crypto import SUITES, get_suite
from mls.psk import (
    RESUMPTION_APPLICATION,
    encode_external_psk_id,
    encode_resumption_psk_id,
    psk_label,
    psk_secret,
)
from tests.vectors import case_id, load_vectors, vector_params

h = bytes.fromhex


VECTOR = "mls/psk_secret.json"
CASES = vector_params(
    VECTOR, lambda i, c: case_id(i, c, f"psks{len(c['psks'])}"), suite_key="cipher_suite"
)


@pytest.mark.parametrize("case", CASES)
def test_psk_secret_vector(case: dict[str, Any]) -> None:
    suite = get_suite(case["cipher_suite"])
    psks = [
        (encode_external_psk_id(h(p["psk_id"]), h(p["psk_nonce"])), h(p["psk"]))
        for p in case["psks"]
    ]
    assert psk_secret(suite, psks) == h(case["psk_secret"])


def test_vector_counts() -> None:
    ours = load_vectors(VECTOR)
    assert all(c["cipher_suite"] in SUITES for c in ours)
    assert len(ours) == 77  # 11 per suite
    assert sorted({len(c["psks"]) for c in ours}) == list(range(11))


@dataclass(frozen=True)
class _Id:
    raw: bytes

    def to_bytes(self) -> bytes:
        return self.raw


def test_encodings_and_order() -> None:
    suite = get_suite(1)
    ext = encode_external_psk_id(b"id", b"nonce")
    assert ext == b"\x01\x02id\x05nonce"
    res = encode_resumption_psk_id(RESUMPTION_APPLICATION, b"g", 7, b"n")
    assert res == b"\x02\x01\x01g" + (7).to_bytes(8, "big") + b"\x01n"
    assert psk_label(ext, 1, 2) == ext + b"\x00\x01\x00\x02"
    assert psk_label(_Id(ext), 1, 2) == psk_label(ext, 1, 2)
    a, b = (ext, b"k1" * 16), (res, b"k2" * 16)
    assert psk_secret(suite, [a, b]) != psk_secret(suite, [b, a])
    assert psk_secret(suite, [(_Id(ext), a[1])]) == psk_secret(suite, [a])
    assert psk_secret(suite, []) == bytes(32)


def test_accepts_wire_struct_psk_id() -> None:
    proposals = pytest.importorskip("mls.messages.proposals")
    suite = get_suite(3)
    ext = proposals.PreSharedKeyID.external(b"id", b"nonce")
    assert psk_label(ext, 0, 1) == psk_label(encode_external_psk_id(b"id", b"nonce"), 0, 1)
    res = proposals.PreSharedKeyID.resumption(
        proposals.ResumptionPSKUsage.APPLICATION, b"g", 7, b"n"
    )
    raw = encode_resumption_psk_id(RESUMPTION_APPLICATION, b"g", 7, b"n")
    assert psk_secret(suite, [(res, b"k" * 32)]) == psk_secret(suite, [(raw, b"k" * 32)])
