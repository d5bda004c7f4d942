"""``python -m tests.node.capture_node run ...``: the real node, plus a record of every Data
payload it receives (protocol and bytes) appended to the file named by
``SPACEPANDA_TEST_CAPTURE``, so a test can scan what a relay saw on the wire (after the Noise
layer). Only for tests: nothing else in the node changes."""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path

from node.cli import main
from node.core.identity import PeerId
from node.transport.dispatch import Dispatcher

_HEADER = struct.Struct(">HI")


def read_capture(path: Path) -> Iterator[tuple[str, bytes]]:
    """The (protocol, payload) records a capturing node wrote, in order received."""
    data = path.read_bytes() if path.exists() else b""
    at = 0
    while at + _HEADER.size <= len(data):
        name_len, payload_len = _HEADER.unpack_from(data, at)
        at += _HEADER.size
        name = data[at:at + name_len].decode()
        at += name_len
        yield name, data[at:at + payload_len]
        at += payload_len


def _install(path: Path) -> None:
    original = Dispatcher.deliver
    out = path.open("ab")

    def deliver(self: Dispatcher, peer: PeerId, protocol: str,
                payload: bytes) -> Awaitable[None] | None:
        name = protocol.encode()
        out.write(_HEADER.pack(len(name), len(payload)) + name + payload)
        out.flush()
        return original(self, peer, protocol, payload)

    Dispatcher.deliver = deliver  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(Path(os.environ["SPACEPANDA_TEST_CAPTURE"]))
    sys.exit(main(sys.argv[1:]))
