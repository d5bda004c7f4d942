"""Fuzz targets for the transport, core, DHT and configuration decoders (issue 11).

Every decoder that takes bytes from the network or from disk outside the channel layer:
frames, the Noise handshake and the session driven by it, transport messages, the handshake
payload, canonical CBOR, multiaddrs and PeerId texts, DHT datagrams and peer records, and
``config.toml``. Each target may raise only the decoder's typed error; a decoded value must
encode back to exactly the input (the decoders are strict, so the encoding is unique).

Sessions never raise at all: every problem comes back as a ``Closed`` event.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from api.parse import MAX_JSON_DEPTH, decode_json, json_depth
from api.problems import Problem
from dht import protocol as dht_protocol
from dht.errors import RecordError
from dht.records import PeerRecord
from dht.wire import RESPONSE, WireError, encode_request, encode_response, parse_datagram
from fuzz.structure import Stream, perturb
from node.config import load_config
from node.core import cbor
from node.core.errors import ConfigError, DecodeError, HandshakeError, IdentityError, MultiaddrError
from node.core.identity import Identity, PeerId
from node.core.keys import NodeKeys
from node.core.multiaddr import Multiaddr
from node.network.gossip_wire import (
    GossipError,
    Graft,
    IHave,
    IWant,
    Prune,
    Publish,
    Stem,
    Subscribe,
    Unsubscribe,
    decode_frame,
    encode_frame,
)
from node.network.mailbox_wire import (
    Batch,
    Fetch,
    MailboxWireError,
    Status,
    Store,
    Stored,
    decode_mailbox,
)
from node.transport.frames import MAX_FRAME, FrameDecoder, encode_frames
from node.transport.messages import (
    Chunk,
    Close,
    CloseCode,
    Data,
    HandshakePayload,
    Ping,
    Pong,
    decode_message,
)
from node.transport.noise import CipherState
from node.transport.noise.cipher import CIPHERS
from node.transport.session import Authenticated, Closed, DataReceived, Session, SessionState

__all__ = ["NET_TARGETS", "net_corpus"]

ALICE = NodeKeys.derive(Identity.from_seed(bytes(range(32))))
BOB = NodeKeys.derive(Identity.from_seed(bytes(range(1, 33))))
NOW = 1_800_000_000


def _rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


# -- frames ------------------------------------------------------------------------------------

_FRAME_LIMITS = (1, 2, 100, 4096, 16480, MAX_FRAME)


def _reference_frames(data: bytes, limit: int) -> tuple[list[bytes], bool]:
    """What a frame decoder must produce: the frames, and whether it fails (bad length)."""
    out, pos = [], 0
    while len(data) - pos >= 2:
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length == 0 or length > limit:
            return out, True
        if pos + 2 + length > len(data):
            break
        out.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return out, False


def fuzz_frames(data: bytes) -> None:
    """FrameDecoder against a reference parser, the input cut into up to four pieces."""
    if len(data) < 3:
        return
    limit = _FRAME_LIMITS[data[0] % len(_FRAME_LIMITS)]
    body = data[3:]
    cuts = sorted({data[1] % (len(body) + 1), data[2] % (len(body) + 1), len(body) // 2})
    decoder = FrameDecoder(limit)
    got: list[bytes] = []
    failed = False
    start = 0
    for end in [*cuts, len(body)]:
        try:
            got.extend(decoder.feed(body[start:end]))
        except DecodeError:
            failed = True
            break
        start = end
    want, want_failed = _reference_frames(body, limit)
    assert failed == want_failed, (failed, want_failed)
    # Frames before the failure are all delivered, in order, unchanged.
    assert got == want[: len(got)] and (failed or got == want), (got, want)
    if not failed:
        assert decoder.buffered == len(body) - sum(2 + len(f) for f in got)


# -- transport messages and the handshake payload -----------------------------------------------


def fuzz_transport_message(data: bytes) -> None:
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert message.encode() == data


def fuzz_handshake_payload(data: bytes) -> None:
    try:
        payload = HandshakePayload.decode(data)
    except DecodeError:
        return
    assert payload.encode() == data
    try:
        payload.verify(BOB.noise_public)
    except HandshakeError:
        return


# -- sessions: the Noise handshake and transport phase ------------------------------------------


def _events_ok(events: list[object]) -> None:
    for event in events:
        assert isinstance(event, Authenticated | DataReceived | Closed), event


def _split(data: bytes, first: int) -> list[bytes]:
    cut = first % (len(data) + 1)
    return [data[:cut], data[cut:]]


def fuzz_session_responder(data: bytes) -> None:
    """A responder fed arbitrary bytes as the initiator's handshake (and anything after)."""
    if not data:
        return
    session = Session(BOB, initiator=False, now=0.0, rng=_rng(1), ephemeral=bytes(range(32)))
    for piece in _split(data[1:], data[0]):
        if piece:
            _events_ok(session.receive_data(piece, 1.0))
        session.data_to_send()
    _events_ok(session.handle_timeout(100.0))


def fuzz_session_initiator(data: bytes) -> None:
    """An initiator (XX message 1 sent) fed arbitrary bytes as the responder's answer."""
    if not data:
        return
    session = Session(
        ALICE, initiator=True, now=0.0, rng=_rng(2), ephemeral=bytes(range(2, 34)),
        expected_peer=BOB.identity.peer_id if data[0] & 1 else None,
    )
    session.start()
    session.data_to_send()
    for piece in _split(data[1:], data[0] >> 1):
        if piece:
            _events_ok(session.receive_data(piece, 1.0))
        session.data_to_send()
    _events_ok(session.handle_timeout(100.0))


@cache
def _handshake_messages() -> tuple[bytes, bytes, bytes]:
    """The three framed XX messages of the fixed Alice -> Bob handshake (deterministic)."""
    a = Session(ALICE, initiator=True, now=0.0, rng=_rng(2), ephemeral=bytes(range(2, 34)),
                listen_addrs=("/ip4/127.0.0.1/tcp/4001",))
    b = Session(BOB, initiator=False, now=0.0, rng=_rng(1), ephemeral=bytes(range(32)))
    a.start()
    m1 = a.data_to_send()
    b.receive_data(m1, 0.0)
    m2 = b.data_to_send()
    a.receive_data(m2, 0.0)
    m3 = a.data_to_send()
    b.receive_data(m3, 0.0)
    assert a.is_open and b.is_open
    return m1, m2, m3


@cache
def _transport_keys() -> tuple[bytes, bytes]:
    """Alice's sending key and Bob's receiving key after the fixed handshake (equal)."""
    m1, m2, m3 = _handshake_messages()
    a = Session(ALICE, initiator=True, now=0.0, rng=_rng(2), ephemeral=bytes(range(2, 34)),
                listen_addrs=("/ip4/127.0.0.1/tcp/4001",))
    b = Session(BOB, initiator=False, now=0.0, rng=_rng(1), ephemeral=bytes(range(32)))
    a.start()
    a.data_to_send()
    b.receive_data(m1, 0.0)
    b.data_to_send()
    a.receive_data(m2, 0.0)
    a.data_to_send()
    b.receive_data(m3, 0.0)
    assert a._send is not None and b._recv is not None and b._send is not None
    return a._send._k or b"", b._send._k or b""


def _opened_receiver() -> tuple[CipherState, Session]:
    """A fresh (sender CipherState, open receiving Session) without redoing the handshake's
    Diffie-Hellman operations: the keys of the fixed handshake, nonces back at 0."""
    to_bob, from_bob = _transport_keys()
    b = Session(BOB, initiator=False, now=0.0, rng=_rng(1), ephemeral=bytes(range(32)))
    b._handshake = None
    b._recv = CipherState(CIPHERS["ChaChaPoly"], to_bob)
    b._send = CipherState(CIPHERS["ChaChaPoly"], from_bob)
    b.state = SessionState.OPEN
    b.peer_id = ALICE.identity.peer_id
    return CipherState(CIPHERS["ChaChaPoly"], to_bob), b


def fuzz_session_transport(data: bytes) -> None:
    """Plaintexts of the fuzzer's choosing, encrypted by a real peer, reach the receiver's
    message decoder (chunk reassembly, Close, Ping...). Input: (2-byte length, plaintext)*."""
    send, b = _opened_receiver()
    frames: list[bytes] = []
    pos = 0
    while pos + 2 <= len(data) and len(frames) < 64:
        n = min(int.from_bytes(data[pos : pos + 2], "big") % 4096, len(data) - pos - 2)
        plaintext = data[pos + 2 : pos + 2 + n]
        pos += 2 + n
        frames.append(send.encrypt_with_ad(b"", plaintext))
    if not frames:
        return
    _events_ok(b.receive_data(encode_frames(frames), 1.0))
    b.data_to_send()
    _events_ok(b.handle_timeout(1000.0))


# -- core: CBOR, multiaddrs, PeerIds -------------------------------------------------------------


def fuzz_cbor(data: bytes) -> None:
    try:
        obj = cbor.decode(data, max_depth=8, max_items=4096, max_size=1 << 16)
    except DecodeError:
        return
    assert cbor.encode(obj) == data


def _texts(data: bytes) -> list[str]:
    return [data.decode("utf-8", "replace"), data.decode("latin-1")]


def fuzz_multiaddr(data: bytes) -> None:
    for text in _texts(data):
        for zero in (False, True):
            try:
                addr = Multiaddr.parse(text, allow_port_zero=zero)
            except MultiaddrError:
                continue
            assert str(addr) == text
            assert Multiaddr.parse(str(addr), allow_port_zero=zero) == addr


def fuzz_peer_id(data: bytes) -> None:
    for text in _texts(data):
        try:
            peer = PeerId.from_string(text)
        except IdentityError:
            continue
        assert peer.to_string() == text
    try:
        peer = PeerId.from_bytes(data)
    except IdentityError:
        return
    assert peer.binary == data


# -- DHT -------------------------------------------------------------------------------------------

_RESPONSE_PARSERS = (dht_protocol._parse_node_id, dht_protocol._parse_identify,
                     dht_protocol._parse_bool)


def fuzz_dht_datagram(data: bytes) -> None:
    try:
        dgram = parse_datagram(data, 8192)
    except WireError:
        return
    assert dgram.size == len(data) and len(dgram.msg_id) == 20
    if dgram.kind == RESPONSE:
        for parse in _RESPONSE_PARSERS:
            try:
                parse(dgram.body)
            except dht_protocol._Drop:
                continue


def fuzz_dht_record(data: bytes) -> None:
    try:
        record = PeerRecord.decode(data)
    except RecordError:
        return
    assert record.encode() == data
    try:
        record.verify(NOW)
    except RecordError:
        return


@cache
def _record_bodies() -> list[dict[str, Any]]:
    return [cbor.decode(PeerRecord.decode(seed).body, max_depth=2, max_items=64)
            for seed in _records()]


def fuzz_structured_dht_record(data: bytes) -> None:
    """A perturbed record body, signed for real by the PeerId it names when it can be (so
    the checks behind the signature are reached), else by Alice."""
    s = Stream(data)
    bodies = _record_bodies()
    body = perturb(bodies[s.byte() % len(bodies)], s)
    try:
        encoded = cbor.encode(body)
    except (TypeError, ValueError):
        return
    signer = ALICE.identity
    if isinstance(body, dict) and body.get("peer") == BOB.identity.peer_id.binary:
        signer = BOB.identity
    signature = signer.sign(b"spacepanda/peer-record/v1" + encoded)
    fuzz_dht_record(cbor.encode([1, encoded, signature]))


# -- config.toml --------------------------------------------------------------------------------

_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="spacepanda-fuzz-config-"))


def fuzz_config(data: bytes) -> None:
    path = _CONFIG_DIR / "config.toml"
    path.write_bytes(data)
    try:
        load_config(env={}, data_dir=_CONFIG_DIR, config_file=path)
    except ConfigError as exc:
        assert "\n" not in str(exc)  # the promised one-line error


# -- network layer: mailboxes (sp/mbx/1) and gossip relay frames (sp/gossip/1) --------------------


def fuzz_mailbox_wire(data: bytes) -> None:
    try:
        message = decode_mailbox(data)
    except MailboxWireError:
        return
    assert message.encode() == data


def fuzz_gossip_frame(data: bytes) -> None:
    try:
        items = decode_frame(data)
    except GossipError:
        return
    assert encode_frame(items) == data


# -- the admin API's JSON bodies ------------------------------------------------------------------


def fuzz_api_json(data: bytes) -> None:
    """``api.parse.decode_json``: only a 400 Problem may escape; whatever decodes is JSON
    nested at most MAX_JSON_DEPTH deep (the depth scan agrees with the parser)."""
    try:
        value = decode_json(data)
    except Problem as exc:
        assert exc.status == 400
        return
    json.dumps(value)
    assert json_depth(data) <= MAX_JSON_DEPTH


# -- structured (CBOR) ---------------------------------------------------------------------------


def _structured(target: Callable[[bytes], None], seeds: Callable[[], list[bytes]],
                max_depth: int) -> Callable[[bytes], None]:
    @cache
    def decoded() -> list[Any]:
        return [cbor.decode(x, max_depth=max_depth, max_items=1 << 12) for x in seeds()]

    def run(data: bytes) -> None:
        s = Stream(data)
        objs = decoded()
        try:
            encoded = cbor.encode(perturb(objs[s.byte() % len(objs)], s))
        except (TypeError, ValueError):
            return
        target(encoded)

    return run


# -- seeds ---------------------------------------------------------------------------------------


def _messages() -> list[bytes]:
    return [
        Ping(0).encode(), Ping((1 << 64) - 1).encode(), Pong(42).encode(),
        Close(CloseCode.NORMAL).encode(), Close(CloseCode.IDLE_TIMEOUT, "idle").encode(),
        Data("sp/env/1", b"\x01\x01" + bytes(30)).encode(), Data("a", b"").encode(),
        Data("x" * 32, bytes(300)).encode(),
        Chunk("sp/env/1", 65281, bytes(100)).encode(),
    ]


def _payloads() -> list[bytes]:
    return [
        HandshakePayload.create(BOB.identity, BOB.noise_public).encode(),
        HandshakePayload.create(
            BOB.identity, BOB.noise_public,
            ["/ip4/127.0.0.1/tcp/4001", f"/ip6/::1/tcp/1/p2p/{BOB.identity.peer_id}",
             "/dns4/boot.example.org/tcp/4001"],
        ).encode(),
    ]


def _records() -> list[bytes]:
    return [
        PeerRecord.create(BOB.identity, noise_static_key=BOB.noise_public,
                          envelope_key=BOB.envelope_public,
                          addrs=["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001"], seq=1,
                          expires_at=NOW + 3600).encode(),
        PeerRecord.create(ALICE.identity, noise_static_key=ALICE.noise_public,
                          envelope_key=ALICE.envelope_public, addrs=[], seq=(1 << 32),
                          expires_at=NOW + 60).encode(),
    ]


def _datagrams() -> list[bytes]:
    mid = bytes(range(20))
    nid = bytes(20)
    return [
        encode_request(mid, "ping", [nid]),
        encode_request(mid, "identify", [nid, bytes(16)]),
        encode_request(mid, "find_node", [nid, bytes(20)]),
        encode_request(mid, "find_value", [nid, bytes(20), b"pad" * 3]),
        encode_request(mid, "store", [nid, bytes(20), _records()[0]]),
        encode_response(mid, nid),
        encode_response(mid, [BOB.identity.public_key_bytes, bytes(64)]),
        encode_response(mid, True),
        encode_response(mid, [[nid, "127.0.0.1", 4001], [bytes(20), "::1", 1]]),
        encode_response(mid, {"value": _records()[1]}),
    ]


def _multiaddrs() -> list[bytes]:
    return [t.encode() for t in (
        "/ip4/127.0.0.1/tcp/4001", "/ip6/::1/tcp/4001", "/ip6/2001:db8::1/tcp/65535",
        "/dns4/boot.example.org/tcp/4001", "/dns6/a-b.c/tcp/1", "/dns/x/tcp/80",
        f"/ip4/10.0.0.1/tcp/9/p2p/{BOB.identity.peer_id}", "/ip4/0.0.0.0/tcp/0",
    )]


def _configs() -> list[bytes]:
    from node.config import default_config_toml

    return [
        default_config_toml().encode(),
        b'listen = "/ip4/127.0.0.1/tcp/4001"\nmax_connections = 32\n',
        b'bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/' + str(BOB.identity.peer_id).encode()
        + b'"]\nlog_format = "json"\nidle_timeout_s = 20.5\nauto_accept_invites = true\n',
        b"[table]\nx = 1\n",
    ]


def _frames() -> list[bytes]:
    m1, m2, m3 = _handshake_messages()
    return [bytes((5, 3, 9)) + m1 + m2 + m3, bytes((4, 0, 0)) + encode_frames([b"a", b"bc"])]


def _transport_inputs() -> list[bytes]:
    out = []
    for group in (_messages()[:3], _messages()[3:5], _messages()[5:]):
        out.append(b"".join(len(m).to_bytes(2, "big") + m for m in group))
    return out


@cache
def net_seeds() -> dict[str, list[bytes]]:
    m1, m2, m3 = _handshake_messages()
    return {
        "frames": _frames(),
        "transport_message": _messages(),
        "handshake_payload": _payloads(),
        "session_responder": [bytes((len(m1) // 2,)) + m1, bytes((0,)) + m1 + m3[:10]],
        "session_initiator": [bytes((0,)) + m2, bytes((1 + 2 * 7,)) + m2],
        "session_transport": _transport_inputs(),
        "cbor": _messages() + _payloads() + _records(),
        "multiaddr": _multiaddrs(),
        "peer_id": [str(BOB.identity.peer_id).encode(), BOB.identity.peer_id.binary],
        "dht_datagram": _datagrams(),
        "dht_record": _records(),
        "config": _configs(),
        "mailbox_wire": [
            Store(1, bytes(20), 19000, bytes(512)).encode(), Stored(2, Status.OK, 5).encode(),
            Fetch(3, bytes(20), 0, 10).encode(),
            Batch(4, Status.OK, ((1, bytes(512)), (2, bytes(512))), 2, True).encode(),
        ],
        "gossip_frame": [
            encode_frame([Publish(3, bytes(512)), IHave(3, (bytes(20), b"\x01" * 20)),
                          IWant((bytes(20),)), Graft(1), Prune(1, 60), Subscribe((1, 2, 3)),
                          Unsubscribe((4,))]),
            encode_frame([Stem(2, bytes(2048))]),
        ],
        "api_json": [b'{"addr": "/ip4/127.0.0.1/tcp/4001"}', b'{"text": "h\\u00e9llo \\"x\\""}',
                     b"[[[[1, 2.5, -3e10, true, null]]]]", b'{"a": {"b": ["[{", "]}"]}}', b"{}"],
    }


NET_TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": fuzz_frames,
    "transport_message": fuzz_transport_message,
    "handshake_payload": fuzz_handshake_payload,
    "session_responder": fuzz_session_responder,
    "session_initiator": fuzz_session_initiator,
    "session_transport": fuzz_session_transport,
    "cbor": fuzz_cbor,
    "multiaddr": fuzz_multiaddr,
    "peer_id": fuzz_peer_id,
    "dht_datagram": fuzz_dht_datagram,
    "dht_record": fuzz_dht_record,
    "config": fuzz_config,
    "api_json": fuzz_api_json,
    "mailbox_wire": fuzz_mailbox_wire,
    "gossip_frame": fuzz_gossip_frame,
    "structured_transport_message": _structured(fuzz_transport_message, _messages, 1),
    "structured_handshake_payload": _structured(fuzz_handshake_payload, _payloads, 2),
    "structured_dht_record": fuzz_structured_dht_record,
}
# Structured targets' seeds: stream prefixes choosing each valid seed and a few edits.
NET_STRUCTURED = {
    "structured_transport_message": len(_messages()),
    "structured_handshake_payload": len(_payloads()),
    "structured_dht_record": len(_records()),
}


def net_corpus() -> dict[str, list[bytes]]:
    """Seeds for every target above."""
    out = dict(net_seeds())
    for name, count in NET_STRUCTURED.items():
        out[name] = [bytes((i, k, 0, 3, 4, 1, 5, 2)) for i in range(count) for k in range(4)]
    return out
