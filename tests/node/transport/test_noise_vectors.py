"""Known-answer tests: every Noise vector file in ``../shared/vectors/noise`` byte for byte.

Each vector is one parametrised case, id ``file:protocol:index``; vectors for functions or
modes we do not implement are skipped with the reason (``pytest -rs`` lists them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from node.core.errors import TransportError
from node.transport.noise import ClosedCipherState, HandshakeState, keypair, parse_protocol_name
from node.transport.noise.cipher import CIPHERS
from node.transport.noise.dh import DH_FUNCTIONS
from node.transport.noise.symmetric import HASHES
from tests.vectors import missing_param, read_vectors, vector_path

NOISE_DIR = vector_path("noise")
JSON_FILES = ("cacophony.txt", "snow.txt", "snow-extended.txt", "noise-c-basic.txt")
FLYNN = "flynn-noise-vectors.txt"
REQUIRED = {f"Noise_{p}_25519_{c}_SHA256" for p in ("XX", "XK") for c in ("ChaChaPoly", "AESGCM")}


@dataclass
class Case:
    file: str
    index: int
    name: str
    init: dict[str, Any] = field(default_factory=dict)
    resp: dict[str, Any] = field(default_factory=dict)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    handshake_hash: bytes | None = None
    # flynn: transport restarts at the initiator after the handshake; others keep alternating.
    flynn_order: bool = False
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}:{self.index}"


def _hex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _unsupported(name: str) -> str | None:
    if name.startswith("NoisePSK_"):
        return "pre-revision-32 NoisePSK mode (obsolete)"
    registries: tuple[dict[str, Any], ...] = (DH_FUNCTIONS, CIPHERS, HASHES)
    functions = zip(name.split("_")[2:], registries, strict=True)
    unknown = [p for p, known in functions if p not in known]
    if unknown:
        # Grouped reason so `-rs` prints one line per primitive set, not one per vector.
        return f"non-standard Noise functions: {', '.join(unknown)}"
    parse_protocol_name(name)  # every standard pattern must parse: fail loudly otherwise
    return None


def _side(v: dict[str, Any], prefix: str) -> dict[str, Any]:
    kw: dict[str, Any] = {"prologue": _hex(v.get(f"{prefix}_prologue")) or b""}
    for ours, theirs in (("s", "static"), ("e", "ephemeral"), ("rs", "remote_static")):
        if f"{prefix}_{theirs}" in v:
            kw[ours] = _hex(v[f"{prefix}_{theirs}"])
    kw["psks"] = [bytes.fromhex(p) for p in v.get(f"{prefix}_psks", [])]
    return kw


def _json_cases(file: str) -> list[Case]:
    data = read_vectors(f"noise/{file}")
    if data is None:  # the folder is there but this file is not: a broken copy, fail loudly
        raise FileNotFoundError(NOISE_DIR / file)
    cases = []
    for i, v in enumerate(data["vectors"]):
        name = v.get("protocol_name") or v["name"]
        case = Case(file, i, name, skip=_unsupported(name))
        if case.skip is None:
            case.init, case.resp = _side(v, "init"), _side(v, "resp")
            case.messages = [
                (bytes.fromhex(m["payload"]), bytes.fromhex(m["ciphertext"])) for m in v["messages"]
            ]
            case.handshake_hash = _hex(v.get("handshake_hash"))
        cases.append(case)
    return cases


def _flynn_cases() -> list[Case]:
    cases = []
    blocks = (NOISE_DIR / FLYNN).read_text().strip().split("\n\n")
    for i, block in enumerate(blocks):
        kv = dict(line.split("=", 1) for line in block.strip().splitlines())
        name = kv["handshake"]
        case = Case(FLYNN, i, name, flynn_order=True, skip=_unsupported(name))
        cases.append(case)
        if case.skip is not None:
            continue
        pattern = parse_protocol_name(name).pattern
        s_i, s_r = _hex(kv.get("init_static")), _hex(kv.get("resp_static"))
        prologue = bytes.fromhex(kv.get("prologue", ""))
        psks = [bytes.fromhex(kv.get("preshared_key", ""))] * pattern.psk_count
        case.init = {"prologue": prologue, "s": s_i, "psks": psks}
        case.resp = {"prologue": prologue, "s": s_r, "psks": psks}
        case.init["e"] = bytes.fromhex(kv["gen_init_ephemeral"])
        case.resp["e"] = bytes.fromhex(kv["gen_resp_ephemeral"])
        # flynn gives only private statics: pre-message keys are derived from them.
        if "s" in pattern.pre_responder:
            assert s_r is not None
            case.init["rs"] = keypair(s_r).public
        if "s" in pattern.pre_initiator:
            assert s_i is not None
            case.resp["rs"] = keypair(s_i).public
        n = 0
        while f"msg_{n}_ciphertext" in kv:
            case.messages.append(
                (bytes.fromhex(kv[f"msg_{n}_payload"]), bytes.fromhex(kv[f"msg_{n}_ciphertext"]))
            )
            n += 1
    return cases


def _all_cases() -> list[Case]:
    if not NOISE_DIR.is_dir():
        return []
    cases: list[Case] = []
    for file in JSON_FILES:
        cases += _json_cases(file)
    return cases + _flynn_cases()


CASES = _all_cases()


def _params() -> list[Any]:
    if not CASES:
        return [missing_param("noise")]
    out = []
    for case in CASES:
        marks = [pytest.mark.skip(reason=case.skip)] if case.skip else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def test_vector_inventory(vectors_dir: Path) -> None:
    """Per-file counts of vectors run and skipped (printed with ``-s``), and the required
    XX/XK suites are present and runnable in cacophony, snow and flynn."""
    ran = Counter(c.file for c in CASES if c.skip is None)
    skipped = Counter(c.file for c in CASES if c.skip is not None)
    for file in (*JSON_FILES, FLYNN):
        print(f"noise vectors {file}: {ran[file]} run, {skipped[file]} skipped")
    for file, per_name in (("cacophony.txt", 1), ("snow.txt", 1), (FLYNN, 4)):
        required = [c for c in CASES if c.file == file and c.name in REQUIRED]
        assert len(required) == per_name * len(REQUIRED), file
        assert all(c.skip is None for c in required)
    # Everything standard is supported: only the obsolete NoisePSK_ vectors and snow's
    # non-standard primitives (P256, XChaChaPoly) are skipped.
    assert ran["cacophony.txt"] == 944 and skipped["cacophony.txt"] == 0
    assert ran["snow.txt"] == 408 and skipped["snow.txt"] == 0
    assert ran[FLYNN] == 1920 and skipped[FLYNN] == 0
    assert ran["noise-c-basic.txt"] == 240


@pytest.mark.parametrize("case", _params())
def test_vector(case: Case, vectors_dir: Path) -> None:
    init = HandshakeState(case.name, initiator=True, **case.init)
    resp = HandshakeState(case.name, initiator=False, **case.resp)
    pattern = init.protocol.pattern
    n_hs = len(pattern.messages)
    assert len(case.messages) >= n_hs

    for i, (payload, ciphertext) in enumerate(case.messages[:n_hs]):
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        assert sender.write_message(payload) == ciphertext, f"handshake message {i}"
        assert receiver.read_message(ciphertext) == payload
    assert init.complete and resp.complete
    assert init.handshake_hash == resp.handshake_hash
    if case.handshake_hash is not None:
        assert init.handshake_hash == case.handshake_hash
    if "s" in {t for m in pattern.messages[::2] for t in m}:
        assert resp.remote_static == init.local_static
    if "s" in {t for m in pattern.messages[1::2] for t in m}:
        assert init.remote_static == resp.local_static

    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    for j, (payload, ciphertext) in enumerate(case.messages[n_hs:]):
        if pattern.one_way:
            from_initiator = not case.flynn_order or j % 2 == 0
        elif case.flynn_order:
            from_initiator = j % 2 == 0
        else:
            from_initiator = (n_hs + j) % 2 == 0
        if not from_initiator and pattern.one_way:
            # flynn lets the responder answer in one-way patterns; the spec forbids it.
            assert isinstance(r_send, ClosedCipherState)
            with pytest.raises(TransportError):
                r_send.encrypt(payload)
            continue
        send, recv = (i_send, r_recv) if from_initiator else (r_send, i_recv)
        assert send.encrypt(payload) == ciphertext, f"transport message {j}"
        assert recv.decrypt(ciphertext) == payload
