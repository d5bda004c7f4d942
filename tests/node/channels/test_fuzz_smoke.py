"""The fuzz targets of ``fuzz/`` as ordinary tests: every target on its seed corpus plus a few
thousand seeded random and mutated inputs, without atheris. A short coverage-guided run
happens too when atheris is installed (skipped otherwise)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz.seeds import main as write_seeds
from fuzz.targets import KNOWN, NAMES, TARGETS, all_targets, corpus

ROOT = Path(__file__).resolve().parents[3]
CORPUS = corpus()
INPUTS_PER_TARGET = 2000



def mutate(rand: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """One to four libFuzzer-style edits."""
    buf = bytearray(data)
    for _ in range(rand.randint(1, 4)):
        op = rand.randrange(7)
        i = rand.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[i % len(buf)] ^= 1 << rand.randrange(8)
        elif op == 1 and buf:
            buf[i % len(buf)] = rand.choice((0x00, 0xFF, 0x18, 0x40, 0x80, 0xA0, 0xF5,
                                             rand.randrange(256)))
        elif op == 2:
            buf[i:i] = bytes((rand.randrange(256),))
        elif op == 3 and buf:
            del buf[i % len(buf) : i % len(buf) + rand.randint(1, 8)]
        elif op == 4:
            del buf[i:]
        elif op == 5:
            other = rand.choice(others)
            j = rand.randrange(len(other) + 1)
            buf[i:] = other[j:]
        else:
            chunk = buf[i : i + rand.randint(1, 16)]
            buf[i:i] = chunk
    return bytes(buf)


def inputs(name: str) -> list[bytes]:
    seeds = CORPUS[name]
    rand = random.Random(f"fuzz-smoke/{name}")
    out = list(seeds)
    for _ in range(INPUTS_PER_TARGET * 3 // 4):
        out.append(mutate(rand, rand.choice(seeds), seeds))
    for _ in range(INPUTS_PER_TARGET // 4):
        out.append(rand.randbytes(rand.choice((0, 1, 2, 8, 40, 200, 600))))
    return out


def test_every_target_has_seeds_and_the_seeds_are_valid() -> None:
    assert set(CORPUS) == {*TARGETS, "all"}
    for name in NAMES:
        assert CORPUS[name], name
    # The plain decoder seeds decode (they are meant to start from valid encodings).
    from node.channels.content import AppHeader, ChannelInfo, CommitHeader, decode_content
    from node.channels.state import ChannelMeta, EpochNode, SentMessage
    from node.channels.wire import decode_payload
    from node.network.wire import decode_net

    decoders: dict[str, Callable[[bytes], object]] = {
        "decode_payload": decode_payload, "decode_content": decode_content,
        "app_header": AppHeader.decode, "commit_header": CommitHeader.decode,
        "channel_info": ChannelInfo.decode, "epoch_node": EpochNode.decode,
        "channel_meta": ChannelMeta.decode, "sent_message": SentMessage.decode,
        "decode_net": decode_net,
    }
    for name, decode in decoders.items():
        for seed in CORPUS[name]:
            assert decode(seed).encode() == seed  # type: ignore[attr-defined]


def test_seed_script_writes_every_target(tmp_path: Path) -> None:
    assert write_seeds(["seeds", str(tmp_path)]) == 0
    for name, seeds in CORPUS.items():
        assert len(list((tmp_path / name).iterdir())) == len(set(seeds)), name


@pytest.mark.parametrize("name", [
    n
    for n in NAMES
])
def test_target_on_seeds_and_random_and_mutated_inputs(name: str) -> None:
    target = TARGETS[name]
    for data in inputs(name):
        target(data)


def test_the_all_target_dispatches_on_the_first_byte() -> None:
    calls: list[tuple[str, bytes]] = []
    saved = dict(TARGETS)
    try:
        for n in NAMES:
            TARGETS[n] = lambda d, n=n: calls.append((n, d))  # type: ignore[misc]
        all_targets(b"")
        all_targets(bytes((0,)) + b"abc")
        all_targets(bytes((len(NAMES) + 1,)))
    finally:
        TARGETS.update(saved)
    assert calls == [(NAMES[0], b"abc"), (NAMES[1], b"")]


def test_known_findings_are_only_skipped_on_request() -> None:
    assert os.environ.get("SPACEPANDA_FUZZ_SKIP_KNOWN") != "1"
    assert KNOWN == ()  # every finding so far is fixed: a new entry needs a reason here


def test_readme_documents_every_target() -> None:
    readme = (ROOT / "fuzz" / "README.md").read_text()
    for name in [*NAMES, "all"]:
        assert f"`{name}`" in readme, name


def test_coverage_guided_run_of_all_targets(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    write_seeds(["seeds", str(tmp_path / "corpus")])
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "all", "-runs=3000", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus" / "all")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = re.search(r"^Done (\d+) runs", proc.stderr, re.MULTILINE)
    assert done is not None and int(done.group(1)) >= 3000, proc.stderr[-3000:]
