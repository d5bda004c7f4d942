"""Fuzz targets for every RFC 9420 top-level struct the node decodes, and the stored forms.

Byte-level decoders (MLSMessage and each payload, the ratchet tree, Commit, Proposal,
GroupSecrets, LeafNode, GroupContext) must raise only :class:`mls.errors.MlsError` and encode
back to exactly the input. The stored forms (a Group's ``to_bytes()``, a KeyPackage bundle)
come from disk. Two semantic targets drive a real group: ``mls_process`` hands the input to
``Group.process`` and ``mls_join`` to ``Client.join`` (with the KeyPackage a Welcome seed is
addressed to), where every check behind the decoder runs; ``mls_key_package`` validates.

Seeds: valid encodings generated here with fixed keys (deterministic), plus the mlswg
``messages.json`` vectors when they are present (``$SPACEPANDA_VECTORS`` or
``../shared/vectors``); nothing from the vectors is committed.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from mls import Client
from mls.crypto.suite import SUITES
from mls.errors import MlsError
from mls.group import Group
from mls.group_context import GroupContext
from mls.key_packages import decode_bundle, encode_bundle, validate_key_package
from mls.messages import (
    Commit,
    GroupInfo,
    GroupSecrets,
    KeyPackage,
    LeafNode,
    MLSMessage,
    PrivateMessage,
    Proposal,
    PublicMessage,
    Welcome,
)
from mls.messages.tree import RatchetTree as WireTree
from mls.tree.ratchet_tree import RatchetTree

__all__ = ["MLS_TARGETS", "mls_corpus"]

SUITE = SUITES[1]
NOW = 1_800_000_000
_ROOT = Path(__file__).resolve().parent.parent


def _rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def _clock() -> float:
    return float(NOW)


def _roundtrip(decode: Callable[[bytes], Any]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        try:
            value = decode(data)
        except MlsError:
            return
        assert value.to_bytes() == data

    target.__name__ = f"fuzz_{getattr(decode, '__qualname__', 'decode')}"
    return target


def fuzz_ratchet_tree(data: bytes) -> None:
    try:
        wire = WireTree.from_bytes(data)
    except MlsError:
        return
    assert wire.to_bytes() == data
    try:
        tree = RatchetTree.from_bytes(SUITE, data)
        tree.tree_hash()
    except MlsError:
        return


def fuzz_group_context(data: bytes) -> None:
    try:
        ctx = GroupContext.from_bytes(data)
    except MlsError:
        return
    assert ctx.to_bytes() == data


def fuzz_stored_group(data: bytes) -> None:
    try:
        group = Group.from_bytes(data, rng=_rng(3), clock=_clock)
    except MlsError:
        return
    assert group.to_bytes() == data


def fuzz_key_package_bundle(data: bytes) -> None:
    try:
        bundle = decode_bundle(SUITE, data, _world().bob_signing_key)
    except MlsError:
        return
    assert bytes(encode_bundle(bundle)) == data


def fuzz_key_package(data: bytes) -> None:
    """A KeyPackage as an invitee's answer carries it: MLSMessage, then MLS's own checks."""
    try:
        message = MLSMessage.from_bytes(data)
    except MlsError:
        return
    if isinstance(message.payload, KeyPackage):
        try:
            validate_key_package(SUITE, message.payload, now=NOW)
        except MlsError:
            return


def fuzz_process(data: bytes) -> None:
    """Bob, a member, processes the input as a message to the group."""
    group = Group.from_bytes(_world().bob_group, rng=_rng(4), clock=_clock)
    try:
        group.process(data)
    except MlsError:
        return


def fuzz_join(data: bytes) -> None:
    """Carol, holding the KeyPackage the seed Welcome names, joins from the input."""
    world = _world()
    carol = Client(b"carol", signing_key=world.carol_signing_key, rng=_rng(5), clock=_clock)
    carol.restore_key_package(world.carol_bundle)
    try:
        carol.join(data, world.tree if data[:1] == b"\x00" else None)
    except MlsError:
        return


# -- a small deterministic world -----------------------------------------------------------------


class _World:
    def __init__(self) -> None:
        alice = Client(b"alice", signing_key=bytes(range(32)), rng=_rng(10), clock=_clock)
        bob = Client(b"bob", signing_key=bytes(range(1, 33)), rng=_rng(11), clock=_clock)
        carol = Client(b"carol", signing_key=bytes(range(2, 34)), rng=_rng(12), clock=_clock)
        self.bob_signing_key = bytes(range(1, 33))
        self.carol_signing_key = bytes(range(2, 34))
        group = alice.create_group(b"fuzz-group-0001")
        bob_kp = bob.key_package()
        out = group.add([bob_kp])
        group.merge_pending_commit()
        assert out.welcome is not None
        bob_group = bob.join(out.welcome, group.export_tree())
        self.bob_group = bob_group.to_bytes()
        self.bob_bundle = next(iter(bob.unused_key_packages().values()), b"")
        carol_kp = carol.key_package()
        self.carol_bundle = next(iter(carol.unused_key_packages().values()))
        # Messages Bob can process at his current epoch.
        self.application = group.encrypt(b"hello bob")
        self.tree = group.export_tree()
        update = group.update()
        self.commit = update.commit
        group.clear_pending_commit()
        self.proposal = group.propose_remove(b"bob")
        add_carol = group.add([carol_kp])
        assert add_carol.welcome is not None
        self.welcome = add_carol.welcome
        self.add_commit = add_carol.commit
        group.clear_pending_commit()
        self.group_info = group.group_info()
        self.key_packages = [bob_kp, carol_kp]
        self.alice_group = group.to_bytes()
        self.tree_after = group.export_tree()


@cache
def _world() -> _World:
    return _World()


def _payload(message: bytes) -> bytes:
    return MLSMessage.from_bytes(message).payload.to_bytes()


def _vectors() -> dict[str, list[bytes]]:
    root = Path(os.environ.get("SPACEPANDA_VECTORS", _ROOT.parent / "shared" / "vectors"))
    path = root / "mls" / "messages.json"
    out: dict[str, list[bytes]] = {}
    if not path.is_file():
        return out
    cases = json.loads(path.read_text())
    for case in cases[:6]:
        for field, value in case.items():
            out.setdefault(field, []).append(bytes.fromhex(value))
    return out


@cache
def mls_corpus() -> dict[str, list[bytes]]:
    w = _world()
    v = _vectors()
    messages = [w.application, w.commit, w.proposal, w.welcome, w.group_info,
                *w.key_packages, w.add_commit]
    vector_messages = [m for f in ("mls_welcome", "mls_group_info", "mls_key_package",
                                   "public_message_application", "public_message_proposal",
                                   "public_message_commit", "private_message")
                       for m in v.get(f, [])]
    commits = [
        Commit.from_bytes(c) for c in v.get("commit", [])
    ]
    return {
        "mls_message": messages + vector_messages,
        "mls_welcome": [_payload(w.welcome), *(_payload(m) for m in v.get("mls_welcome", []))],
        "mls_group_info": [_payload(w.group_info),
                           *(_payload(m) for m in v.get("mls_group_info", []))],
        "mls_key_package_struct": [_payload(k) for k in w.key_packages],
        "mls_private_message": [_payload(w.application), _payload(w.commit)],
        "mls_public_message": [_payload(m) for f in ("public_message_application",
                                                     "public_message_commit")
                               for m in v.get(f, [])] or [b"\x00"],
        "mls_ratchet_tree": [w.tree, w.tree_after, *v.get("ratchet_tree", [])],
        "mls_commit": [c.to_bytes() for c in commits] or [b"\x00"],
        "mls_proposal": [b"\x00\x03\x00\x00\x00\x01"],
        "mls_group_secrets": v.get("group_secrets", []) or [b"\x00"],
        "mls_leaf_node": [KeyPackage.from_bytes(_payload(k)).leaf_node.to_bytes()
                          for k in w.key_packages],
        "mls_group_context": [Group.from_bytes(w.alice_group).state.context.to_bytes()],
        "mls_stored_group": [w.bob_group, w.alice_group],
        "mls_key_package_bundle": [w.bob_bundle] if w.bob_bundle else [w.carol_bundle],
        "mls_key_package": list(w.key_packages),
        "mls_process": [w.application, w.commit, w.proposal],
        "mls_join": [w.welcome, b"\x00" + w.welcome[1:]],
    }


MLS_TARGETS: dict[str, Callable[[bytes], None]] = {
    "mls_message": _roundtrip(MLSMessage.from_bytes),
    "mls_welcome": _roundtrip(Welcome.from_bytes),
    "mls_group_info": _roundtrip(GroupInfo.from_bytes),
    "mls_key_package_struct": _roundtrip(KeyPackage.from_bytes),
    "mls_private_message": _roundtrip(PrivateMessage.from_bytes),
    "mls_public_message": _roundtrip(PublicMessage.from_bytes),
    "mls_ratchet_tree": fuzz_ratchet_tree,
    "mls_commit": _roundtrip(Commit.from_bytes),
    "mls_proposal": _roundtrip(Proposal.from_bytes),
    "mls_group_secrets": _roundtrip(GroupSecrets.from_bytes),
    "mls_leaf_node": _roundtrip(LeafNode.from_bytes),
    "mls_group_context": fuzz_group_context,
    "mls_stored_group": fuzz_stored_group,
    "mls_key_package_bundle": fuzz_key_package_bundle,
    "mls_key_package": fuzz_key_package,
    "mls_process": fuzz_process,
    "mls_join": fuzz_join,
}
