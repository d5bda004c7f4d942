"""MLS group operations, ours against AWS mls-rs (``agentvault-mls-rs-uniffi``), in one run.

Suite 1 (X25519, AES-128-GCM, SHA-256, Ed25519), basic credentials, ratchet tree in the
Welcome for both. Measured, one call at a time with ``time.perf_counter``:

* KeyPackage generation (MLSMessage bytes out);
* add-member commit creation (one new member, Welcome included) by the group creator, and
  the processing of that commit by another member, at each group size;
* encrypt a 1 KiB application message and decrypt it on the other member of a 2-member group.

Groups are built with one commit adding every member at once (for both implementations); the
processing member joins from that Welcome. Each timed add grows the group by one, so a run at
size N covers sizes N .. N+iterations-1. Messages cross the API as RFC 9420 bytes on both
sides (mls-rs ``Message.from_bytes``/``to_bytes`` are inside the timed calls), since that is
what a node does.

    .venv/bin/python bench/mls_groups.py [--sizes 2 32 128 1024] [--iterations 7]
        [--micro-iterations 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._util import machine_line, table
from mls import ApplicationMessage, Client, CommitApplied, Group, WireFormat

try:
    import mls_rs_uniffi as rs
except ImportError:  # pragma: no cover - the bench needs it; say so plainly
    sys.exit("mls_rs_uniffi is not installed: pip install agentvault-mls-rs-uniffi")

PAYLOAD = bytes(range(256)) * 4  # 1 KiB
GROUP_ID = b"bench-group"
DEFAULT_SIZES = [2, 32, 128, 1024]
T = TypeVar("T")
_COMMIT_KEYS = ("add create", "add process", "update create", "update process")
_COMMIT_LABELS = {
    "add create": "add-member commit: create",
    "add process": "add-member commit: process",
    "update create": "commit with UpdatePath: create",
    "update process": "commit with UpdatePath: process",
}


def _timed(call: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = call()
    return time.perf_counter() - t0, result


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


# -- ours -------------------------------------------------------------------------------------


def _our_client(name: bytes, fmt: WireFormat = WireFormat.PRIVATE_MESSAGE) -> Client:
    return Client(name, 1, clock=time.time, handshake_format=fmt)


def ours_key_package(n: int) -> list[float]:
    client = _our_client(b"kp")
    return [_timed(client.key_package)[0] for _ in range(n)]


def ours_group(size: int, fmt: WireFormat = WireFormat.PRIVATE_MESSAGE) -> tuple[Group, Group]:
    """A ``size``-member group built with one commit: (creator, member at leaf 1)."""
    creator = _our_client(b"member-0", fmt)
    group = creator.create_group(GROUP_ID)
    if size < 2:
        raise ValueError("groups have at least 2 members here")
    second = _our_client(b"member-1")
    kps = [second.key_package()]
    kps += [_our_client(b"member-%d" % i).key_package() for i in range(2, size)]
    out = group.add(kps)
    group.merge_pending_commit()
    assert out.welcome is not None
    return group, second.join(out.welcome)


def ours_commits(size: int, iterations: int, fmt: WireFormat) -> dict[str, list[float]]:
    creator, member = ours_group(size, fmt)
    times: dict[str, list[float]] = {k: [] for k in _COMMIT_KEYS}
    for i in range(iterations):
        kp = _our_client(b"new-%d" % i).key_package()
        for kind, make in (("add", partial(creator.add, [kp])), ("update", creator.update)):
            dt, out = _timed(make)
            times[f"{kind} create"].append(dt)
            dt, applied = _timed(partial(member.process, out.commit))
            assert isinstance(applied, CommitApplied)
            times[f"{kind} process"].append(dt)
            creator.merge_pending_commit()
    assert creator.export_secret(b"b", b"", 16) == member.export_secret(b"b", b"", 16)
    return times


def ours_encrypt_decrypt(n: int) -> list[float]:
    a, b = ours_group(2)

    def roundtrip() -> None:
        got = b.process(a.encrypt(PAYLOAD))
        assert isinstance(got, ApplicationMessage) and got.data == PAYLOAD

    return [_timed(roundtrip)[0] for _ in range(n)]


# -- mls-rs -----------------------------------------------------------------------------------


def _rs_client(name: bytes) -> Any:
    config = rs.client_config_default()
    config.use_ratchet_tree_extension = True
    keys = rs.generate_signature_keypair(rs.CipherSuite.CURVE25519_AES128)
    return rs.Client(name, keys, config)


def _rs_kp(client: Any) -> bytes:
    return bytes(client.generate_key_package_message().to_bytes())


def rs_key_package(n: int) -> list[float]:
    client = _rs_client(b"kp")
    return [_timed(lambda: _rs_kp(client))[0] for _ in range(n)]


def rs_group(size: int) -> tuple[Any, Any]:
    creator = _rs_client(b"member-0")
    group = creator.create_group(GROUP_ID)
    second = _rs_client(b"member-1")
    kps = [_rs_kp(second)] + [_rs_kp(_rs_client(b"member-%d" % i)) for i in range(2, size)]
    out = group.add_members([rs.Message.from_bytes(kp) for kp in kps])
    group.process_incoming_message(out.commit_message)  # applies mls-rs's own pending commit
    joined = second.join_group(None, out.welcome_message)
    return group, joined.group


def rs_commits(size: int, iterations: int) -> dict[str, list[float]]:
    creator, member = rs_group(size)
    times: dict[str, list[float]] = {k: [] for k in _COMMIT_KEYS}
    for i in range(iterations):
        kp = _rs_kp(_rs_client(b"new-%d" % i))

        def add(kp: bytes = kp) -> bytes:
            out = creator.add_members([rs.Message.from_bytes(kp)])
            return bytes(out.commit_message.to_bytes())

        def update() -> bytes:
            # mls-rs's empty commit carries an UpdatePath, like our update().
            return bytes(creator.commit().commit_message.to_bytes())

        for kind, make in (("add", add), ("update", update)):
            dt, commit = _timed(make)
            times[f"{kind} create"].append(dt)

            def process(c: bytes = commit) -> Any:
                return member.process_incoming_message(rs.Message.from_bytes(c))

            dt, got = _timed(process)
            assert got.is_commit()
            times[f"{kind} process"].append(dt)
            creator.process_incoming_message(rs.Message.from_bytes(commit))  # merge
    assert creator.export_secret(b"b", b"", 16) == member.export_secret(b"b", b"", 16)
    return times


def rs_encrypt_decrypt(n: int) -> list[float]:
    a, b = rs_group(2)

    def roundtrip() -> None:
        msg = bytes(a.encrypt_application_message(PAYLOAD).to_bytes())
        got = b.process_incoming_message(rs.Message.from_bytes(msg))
        assert bytes(got.data) == PAYLOAD

    return [_timed(roundtrip)[0] for _ in range(n)]


# -- report -----------------------------------------------------------------------------------


def run(sizes: list[int], iterations: int, micro: int, fmt: WireFormat) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def record(op: str, size: int | None, ours: list[float], theirs: list[float]) -> None:
        o, t = _median_ms(ours), _median_ms(theirs)
        rows.append({"operation": op, "size": size, "ours_ms": o, "mlsrs_ms": t, "ratio": o / t})
        print(f"  {op} {size or ''}: ours {o:.3f} ms, mls-rs {t:.3f} ms", file=sys.stderr)

    warm = max(1, micro // 10)
    ours_key_package(warm), rs_key_package(warm)
    record("KeyPackage generation", None, ours_key_package(micro), rs_key_package(micro))
    ours_encrypt_decrypt(warm), rs_encrypt_decrypt(warm)
    record("1 KiB encrypt+decrypt", 2, ours_encrypt_decrypt(micro), rs_encrypt_decrypt(micro))
    for size in sizes:
        ours = ours_commits(size, iterations, fmt)
        theirs = rs_commits(size, iterations)
        for key in _COMMIT_KEYS:
            record(_COMMIT_LABELS[key], size, ours[key], theirs[key])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument(
        "--iterations", type=int, default=7, help="timed add-member commits per group size"
    )
    parser.add_argument(
        "--micro-iterations",
        type=int,
        default=300,
        help="timed calls for KeyPackage generation and encrypt+decrypt",
    )
    parser.add_argument(
        "--handshake",
        choices=["private", "public"],
        default="private",
        help="wire format of our commits (mls-rs's bindings always send PublicMessage)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    fmt = WireFormat.PRIVATE_MESSAGE if args.handshake == "private" else WireFormat.PUBLIC_MESSAGE
    if min(args.sizes) < 2 or args.iterations < 1 or args.micro_iterations < 1:
        parser.error("sizes must be >= 2 and iteration counts >= 1")

    header = machine_line()
    rows = run(args.sizes, args.iterations, args.micro_iterations, fmt)
    if args.json:
        print(json.dumps({"machine": header, "rows": rows}, indent=2))
        return
    print(header)
    print(
        f"medians in ms; our commits as {fmt.name}, mls-rs's as PUBLIC_MESSAGE; "
        f"{args.iterations} timed commits of each kind per size, "
        f"{args.micro_iterations} timed KeyPackages and encrypt+decrypt round trips"
    )
    print(
        table(
            ["operation", "members", "ours ms", "mls-rs ms", "ours/mls-rs"],
            [
                [
                    r["operation"],
                    "" if r["size"] is None else str(r["size"]),
                    f"{r['ours_ms']:.3f}",
                    f"{r['mlsrs_ms']:.3f}",
                    f"{r['ratio']:.2f}x",
                ]
                for r in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
