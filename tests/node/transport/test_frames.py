"""Length-prefix framing: any split of a stream yields the same frames; limits enforced."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.errors import DecodeError, FrameTooLarge
from node.transport.frames import MAX_FRAME, FrameDecoder, encode_frame, encode_frames

payloads = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_encode_frame_layout() -> None:
    assert encode_frame(b"abc") == b"\x00\x03abc"
    assert encode_frame(b"x" * 256)[:2] == b"\x01\x00"
    assert encode_frame(b"x" * MAX_FRAME)[:2] == b"\xff\xff"
    assert encode_frames([b"a", b"bc"]) == b"\x00\x01a\x00\x02bc"
    assert encode_frames([]) == b""


@pytest.mark.parametrize("size", [0, MAX_FRAME + 1])
def test_encode_frame_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        encode_frame(b"x" * size)
    with pytest.raises(ValueError):
        encode_frames([b"ok", b"x" * size])


def test_encode_frame_respects_lower_limit() -> None:
    assert encode_frame(b"x" * 10, max_frame=10)[:2] == b"\x00\x0a"
    with pytest.raises(ValueError):
        encode_frame(b"x" * 11, max_frame=10)


def test_decode_byte_by_byte() -> None:
    frames = [b"a", b"hello", b"x" * 1000]
    d = FrameDecoder()
    out: list[bytes] = []
    for byte in encode_frames(frames):
        out += d.feed(bytes([byte]))
    assert out == frames
    assert d.buffered == 0


def test_partial_frame_is_buffered_and_bounded() -> None:
    d = FrameDecoder(max_frame=100)
    assert d.feed(b"\x00") == []
    assert d.buffered == 1
    assert d.feed(b"\x64" + b"y" * 99) == []
    assert d.buffered == 101
    assert d.feed(b"y\x00\x01") == [b"y" * 100]
    assert d.buffered == 2
    assert d.feed(b"z") == [b"z"]
    assert d.feed(b"") == []


def test_max_frame_accepted_and_one_more_rejected() -> None:
    d = FrameDecoder(max_frame=10)
    assert d.feed(b"\x00\x0a" + b"k" * 10) == [b"k" * 10]
    with pytest.raises(FrameTooLarge, match="11 bytes"):
        d.feed(b"\x00\x0b")
    # Failed for good: the stream is out of sync.
    with pytest.raises(FrameTooLarge):
        d.feed(b"\x00\x01a")
    assert d.buffered == 0


def test_full_noise_size_frame() -> None:
    d = FrameDecoder()
    big = bytes(range(256)) * 255 + b"\x01" * 255
    assert len(big) == MAX_FRAME
    assert d.feed(encode_frame(big)) == [big]


def test_oversize_detected_from_header_alone() -> None:
    d = FrameDecoder(max_frame=1000)
    with pytest.raises(FrameTooLarge):
        d.feed(b"\x00\x01a\x03\xe9")  # second header: 1001
    d2 = FrameDecoder(max_frame=1000)
    assert d2.feed(b"\x03") == []
    with pytest.raises(FrameTooLarge):
        d2.feed(b"\xe9")


def test_zero_length_frame_rejected() -> None:
    d = FrameDecoder()
    with pytest.raises(DecodeError, match="zero-length"):
        d.feed(b"\x00\x00")
    with pytest.raises(DecodeError):
        d.feed(b"\x00\x01a")
    d2 = FrameDecoder()
    d2.feed(b"\x00\x01a\x00")
    with pytest.raises(DecodeError, match="zero-length"):
        d2.feed(b"\x00")


@pytest.mark.parametrize("bad", [0, -1, MAX_FRAME + 1])
def test_decoder_rejects_bad_limit(bad: int) -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=bad)


def test_accepts_bytearray_and_memoryview() -> None:
    data = encode_frames([b"ab", b"cd"])
    assert FrameDecoder().feed(bytearray(data)) == [b"ab", b"cd"]
    assert FrameDecoder().feed(memoryview(data)) == [b"ab", b"cd"]
    out = FrameDecoder().feed(memoryview(data)[2:3])
    assert out == []


def test_returned_frames_are_independent_bytes() -> None:
    d = FrameDecoder()
    src = bytearray(encode_frame(b"abc"))
    (frame,) = d.feed(src)
    src[2:5] = b"zzz"
    assert frame == b"abc"
    assert type(frame) is bytes


def test_bulk_throughput_is_linear() -> None:
    # Not a benchmark: a coarse guard against quadratic buffering. 64 MiB in odd-sized
    # chunks must take well under a few seconds even on a loaded 2-core box.
    payload = b"p" * MAX_FRAME
    stream = encode_frames([payload] * 1024)
    chunks = [stream[i : i + 50_000] for i in range(0, len(stream), 50_000)]
    d = FrameDecoder()
    start = time.perf_counter()
    count = sum(len(d.feed(c)) for c in chunks)
    elapsed = time.perf_counter() - start
    assert count == 1024
    assert elapsed < 5.0


@settings(max_examples=300)
@given(payloads, st.lists(st.integers(min_value=0), max_size=30))
def test_any_split_yields_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    stream = encode_frames(frames)
    d = FrameDecoder(max_frame=300)
    out: list[bytes] = []
    for chunk in _split(stream, cuts):
        out += d.feed(chunk)
    assert out == frames
    assert d.buffered == 0


@settings(max_examples=300)
@given(payloads, st.integers(1, 64))
def test_fixed_chunking(frames: list[bytes], size: int) -> None:
    stream = encode_frames(frames)
    d = FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), size):
        out += d.feed(memoryview(stream)[i : i + size])
    assert out == frames


@settings(max_examples=500)
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=10))
def test_random_bytes_only_typed_errors(data: bytes, cuts: list[int]) -> None:
    d = FrameDecoder(max_frame=64)
    out: list[bytes] = []
    try:
        for chunk in _split(data, cuts):
            out += d.feed(chunk)
    except DecodeError:
        return
    assert all(1 <= len(f) <= 64 for f in out)
    assert d.buffered < 2 + 64
    # What came out re-encodes to a prefix of the input.
    assert data.startswith(encode_frames(out))
    assert len(encode_frames(out)) + d.buffered == len(data)
