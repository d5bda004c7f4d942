"""Per-operation timings of the MLS primitives under everything else in ``mls``, per suite.

Each operation is timed one call at a time with ``time.perf_counter`` after a warm-up; the
report gives the median and 95th percentile in microseconds, per cipher suite (all seven by
default). Decoding a 1,024-member ratchet tree (every leaf signed, every parent set) and the
32-member group commits are timed on 1/100 of the iterations (at least 10), since one call
takes milliseconds.

    .venv/bin/python bench/mls_primitives.py [--iterations N] [--suites 1 2 ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mls import Client
from mls.crypto import SUITES, get_suite
from mls.crypto.labels import sign_with_label, verify_with_label
from mls.crypto.suite import CipherSuite
from mls.group_context import GroupContext
from mls.messages import Capabilities, Credential, LeafNode, LeafNodeSource, Lifetime
from mls.messages.common import WireFormat
from mls.messages.framing import FramedContent, MLSMessage, PrivateMessage, Sender
from mls.messages.tree import ParentNode
from mls.protection import authenticate, protect_private, unprotect_private
from mls.secret_tree import RatchetType, SecretTree
from mls.tree import RatchetTree, sign_leaf_node

PAYLOAD = bytes(range(256)) * 4  # 1 KiB application message
N_LEAVES = 2
TREE_MEMBERS = 1024
GROUP_MEMBERS = 32


def _time_each(calls: Iterator[Callable[[], object]]) -> list[float]:
    out = []
    for call in calls:
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def _summary(samples: list[float], warmup: int) -> dict[str, float]:
    kept = sorted(samples[warmup:])
    p95 = kept[min(len(kept) - 1, int(0.95 * len(kept)))]
    return {"median_us": statistics.median(kept) * 1e6, "p95_us": p95 * 1e6, "n": len(kept)}


def full_tree(suite: CipherSuite, members: int) -> bytes:
    """RFC 9420 encoding of a tree where every leaf is a signed member and every parent set."""
    tree = RatchetTree(suite)
    for i in range(members):
        _, enc = suite.generate_key_pair(os.urandom)
        sig_priv, sig_pub = suite.generate_signature_key_pair(os.urandom)
        leaf = LeafNode(
            enc,
            sig_pub,
            Credential.basic(b"member-%d" % i),
            Capabilities(cipher_suites=(suite.suite_id,), credentials=(1,)),
            LeafNodeSource.KEY_PACKAGE,
            lifetime=Lifetime(0, 2**64 - 1),
        )
        tree.add_leaf(sign_leaf_node(suite, leaf, sig_priv))
    for p in range(1, tree.n_nodes, 2):
        tree.set_parent(p, ParentNode(os.urandom(suite.npk), os.urandom(suite.nh)))
    return tree.to_bytes()


def bench_suite(suite: CipherSuite, n: int, warmup: int) -> dict[str, dict[str, float]]:
    total = n + warmup
    results: dict[str, dict[str, float]] = {}
    sig_priv, sig_pub = suite.generate_signature_key_pair(os.urandom)

    sig = sign_with_label(suite, sig_priv, "FramedContentTBS", PAYLOAD)
    results["keygen_signature"] = _summary(
        _time_each(partial(suite.generate_signature_key_pair, os.urandom) for _ in range(total)),
        warmup,
    )
    results["keygen_hpke_derive_key_pair"] = _summary(
        _time_each(partial(suite.generate_key_pair, os.urandom) for _ in range(total)), warmup
    )
    results["sign_1KiB"] = _summary(
        _time_each(
            (lambda: sign_with_label(suite, sig_priv, "FramedContentTBS", PAYLOAD))
            for _ in range(total)
        ),
        warmup,
    )
    results["verify_1KiB"] = _summary(
        _time_each(
            (lambda: verify_with_label(suite, sig_pub, "FramedContentTBS", PAYLOAD, sig))
            for _ in range(total)
        ),
        warmup,
    )

    hpke_priv, hpke_pub = suite.generate_key_pair(os.urandom)
    secret = os.urandom(32)  # what MLS seals with HPKE: path secrets, group secrets
    results["hpke_seal_32B"] = _summary(
        _time_each(
            (lambda: suite.hpke_seal(hpke_pub, b"info", b"", secret, rng=os.urandom))
            for _ in range(total)
        ),
        warmup,
    )
    sealed = [suite.hpke_seal(hpke_pub, b"info", b"", secret, rng=os.urandom) for _ in range(total)]
    results["hpke_seal_32B_library"] = _summary(
        _time_each((lambda: suite.hpke_seal(hpke_pub, b"info", b"", secret)) for _ in range(total)),
        warmup,
    )
    results["hpke_open_32B"] = _summary(
        _time_each(
            partial(suite.hpke_open, hpke_priv, enc, b"info", b"", ct) for enc, ct in sealed
        ),
        warmup,
    )

    tree = SecretTree(suite, os.urandom(suite.nh), N_LEAVES)
    tree.next_key(0, RatchetType.APPLICATION)  # derive the leaf once, then time steps only
    results["secret_tree_ratchet_step"] = _summary(
        _time_each((lambda: tree.next_key(0, RatchetType.APPLICATION)) for _ in range(total)),
        warmup,
    )

    gc = GroupContext(suite.suite_id, b"bench-group", 7, bytes(suite.nh), bytes(suite.nh))
    encryption_secret, sender_data_secret = os.urandom(suite.nh), os.urandom(suite.nh)
    sender_tree = SecretTree(suite, encryption_secret, N_LEAVES)
    fc = FramedContent(gc.group_id, gc.epoch, Sender.member(1), b"", PAYLOAD)
    wire: list[bytes] = []

    def protect() -> None:
        ac = authenticate(suite, WireFormat.PRIVATE_MESSAGE, fc, sig_priv, gc)
        msg = protect_private(
            suite,
            ac,
            secret_tree=sender_tree,
            sender_data_secret=sender_data_secret,
            rng=os.urandom,
        )
        wire.append(MLSMessage(msg).to_bytes())

    results["private_message_protect_1KiB"] = _summary(
        _time_each(protect for _ in range(total)), warmup
    )

    receiver_tree = SecretTree(suite, encryption_secret, N_LEAVES)

    def unprotect(data: bytes) -> None:
        msg = MLSMessage.from_bytes(data).payload
        assert isinstance(msg, PrivateMessage)
        unverified = unprotect_private(
            suite,
            msg,
            group_context=gc,
            secret_tree=receiver_tree,
            sender_data_secret=sender_data_secret,
        )
        verified = unverified.verify(sig_pub)
        assert verified.content.content == PAYLOAD

    results["private_message_unprotect_1KiB"] = _summary(
        _time_each(partial(unprotect, d) for d in wire), warmup
    )

    tree_bytes = full_tree(suite, TREE_MEMBERS)
    slow_n = max(10, n // 100)
    slow_warmup = max(2, warmup // 100)
    results[f"ratchet_tree_decode_{TREE_MEMBERS}"] = _summary(
        _time_each(
            partial(RatchetTree.from_bytes, suite, tree_bytes) for _ in range(slow_n + slow_warmup)
        ),
        slow_warmup,
    )
    results.update(bench_group(suite, slow_n, slow_warmup))
    return results


def bench_group(suite: CipherSuite, n: int, warmup: int) -> dict[str, dict[str, float]]:
    """A 32-member group: commit with an UpdatePath (31 HPKE seals after a one-commit build)
    created by leaf 0 and processed by leaf 1, then an add-member commit (one new member,
    Welcome) created and processed."""
    sid = suite.suite_id
    clients = [Client(b"m%d" % i, sid, clock=time.time) for i in range(GROUP_MEMBERS)]
    creator = clients[0].create_group(b"bench-%d" % sid)
    out = creator.add([c.key_package() for c in clients[1:]])
    creator.merge_pending_commit()
    assert out.welcome is not None
    member = clients[1].join(out.welcome)
    create_t: list[float] = []
    process_t: list[float] = []
    for _ in range(n + warmup):
        t0 = time.perf_counter()
        out = creator.update()
        t1 = time.perf_counter()
        member.process(out.commit)
        t2 = time.perf_counter()
        creator.merge_pending_commit()
        create_t.append(t1 - t0)
        process_t.append(t2 - t1)
    add_create: list[float] = []
    add_process: list[float] = []
    for i in range(n + warmup):
        kp = Client(b"new-%d" % i, sid, clock=time.time).key_package()
        t0 = time.perf_counter()
        out = creator.add([kp])
        t1 = time.perf_counter()
        member.process(out.commit)
        t2 = time.perf_counter()
        creator.merge_pending_commit()
        add_create.append(t1 - t0)
        add_process.append(t2 - t1)
    return {
        f"group{GROUP_MEMBERS}_update_commit_create": _summary(create_t, warmup),
        f"group{GROUP_MEMBERS}_update_commit_process": _summary(process_t, warmup),
        f"group{GROUP_MEMBERS}_add_commit_create": _summary(add_create, warmup),
        f"group{GROUP_MEMBERS}_add_commit_process": _summary(add_process, warmup),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--suites", type=int, nargs="+", default=sorted(SUITES))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    report = {
        f"suite{sid}": bench_suite(get_suite(sid), args.iterations, args.warmup)
        for sid in args.suites
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{args.iterations} timed iterations per operation ({args.warmup} warm-up)"
    )
    print(f"{'suite':<7} {'operation':<38} {'median us':>10} {'p95 us':>10}")
    for suite_name, ops in report.items():
        for op, r in ops.items():
            print(f"{suite_name:<7} {op:<38} {r['median_us']:>10.1f} {r['p95_us']:>10.1f}")


if __name__ == "__main__":
    main()
