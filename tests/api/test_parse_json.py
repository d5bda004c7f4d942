"""JSON bodies: the depth scan agrees with the real nesting; deep, odd or huge JSON is a 400."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.parse import MAX_JSON_DEPTH, decode_json, json_depth
from api.problems import Problem

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(alphabet=st.sampled_from('ab[]{}"\\/ \u00e9\n'), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet=st.sampled_from('k[]{}"\\'), max_size=4), inner, max_size=3),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(_json, st.booleans())
def test_depth_scan_matches_the_structure(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(raw) == _depth(value)
    assert decode_json(raw) == value


@pytest.mark.parametrize("raw", [
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    b"[" * 100_000,
    b'{"a":' * 5000,
    b"1" * 5000,
    b"\xff\xfe{}",
    b'{"a": 1} trailing',
    b"",
])
def test_refused_bodies_are_400(raw: bytes) -> None:
    with pytest.raises(Problem) as info:
        decode_json(raw)
    assert info.value.status == 400


def test_the_depth_limit_itself_is_accepted() -> None:
    raw = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(raw) == MAX_JSON_DEPTH
    decode_json(raw)
    # Brackets inside strings do not count, escaped quotes included.
    assert json_depth(b'["[[[[\\"[[[", "]]"]') == 1
