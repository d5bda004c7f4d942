"""``spacepanda channel ...``, ``send``, ``messages``, ``invites``, ``profile``: the channel
commands, through the admin API (``api.client``).

CHANNEL arguments take the full channel id, a unique prefix of at least 6 hex digits, or a
channel's exact name (when only one channel has it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from api.client import ApiClient, ApiError, EventStream, NodeUnreachable
from node.cli import EXIT_OK, _client, _json, _out, _peer_id, table
from node.core.errors import IdentityError, SpacePandaError
from node.core.identity import PeerId

__all__ = ["add_commands", "format_message", "match_channel"]

MIN_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")
_INVITE_ID = re.compile(r"[0-9a-f]{32}")
_PAGE = 1000
POLL_S = 1.0  # follow: how often to look for messages no event announced (our own)

Command = Callable[[argparse.Namespace], int]


# ---- argument types -------------------------------------------------------------------------


def _invite_id(text: str) -> str:
    if not _INVITE_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"an invite id is 32 lowercase hex digits: {text!r}")
    return text


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return n


# ---- CHANNEL ------------------------------------------------------------------------------------


def match_channel(channels: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The one channel ``text`` names (id, unique id prefix >= 6 hex digits, exact name)."""
    by_id = [c for c in channels if c.get("channel_id") == text]
    if by_id:
        return by_id[0]
    matches = [c for c in channels if c.get("name") == text]
    if len(text) >= MIN_PREFIX and _HEX.fullmatch(text):
        matches += [
            c for c in channels
            if str(c.get("channel_id", "")).startswith(text) and c not in matches
        ]
    if not matches:
        hint = (
            f" (an id prefix needs at least {MIN_PREFIX} hex digits)"
            if _HEX.fullmatch(text) and len(text) < MIN_PREFIX else ""
        )
        raise SpacePandaError(f"no channel matches {text!r}{hint}; see `spacepanda channel list`")
    if len(matches) > 1:
        found = ", ".join(f"{str(c.get('channel_id'))[:12]} ({c.get('name')})" for c in matches)
        raise SpacePandaError(
            f"{text!r} is ambiguous: it matches {len(matches)} channels: {found}; "
            "give more of the channel id"
        )
    return matches[0]


def _channel(client: ApiClient, text: str) -> dict[str, Any]:
    return match_channel(client.channels(), text)


# ---- output -------------------------------------------------------------------------------------


def _who(peer_id: str, name: str = "") -> str:
    if name:
        return name
    try:
        return PeerId.from_string(peer_id).short()
    except IdentityError:
        return peer_id


def _when(seconds: Any) -> str:
    try:
        return datetime.fromtimestamp(float(seconds)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def format_message(m: dict[str, Any]) -> str:
    """``2025-01-02 10:11:12  alice: text`` (local time, as sent)."""
    who = _who(str(m.get("sender", "?")), str(m.get("sender_name") or ""))
    return f"{_when(m.get('sent_at'))}  {who}: {m.get('text', '')}"


def _compact(value: Any) -> None:
    _out(json.dumps(value, sort_keys=True, ensure_ascii=False))


def format_channel(ch: dict[str, Any]) -> str:
    rows = [
        ["channel", str(ch.get("channel_id", "?"))],
        ["name", str(ch.get("name", "?"))],
        ["status", str(ch.get("status", "?"))],
        ["epoch", str(ch.get("epoch", "?"))],
        ["fingerprint", str(ch.get("epoch_fingerprint", "?"))],
    ]
    dropped = ch.get("dropped")
    if isinstance(dropped, dict) and dropped:
        for i, (reason, n) in enumerate(sorted(dropped.items())):
            rows.append(["dropped" if i == 0 else "", f"{reason} {n}"])
    lines = table(["", ""], rows).split("\n", 1)[1]
    members = ch.get("members")
    member_rows = [
        [str(m.get("peer_id", "?")), str(m.get("role", "?")), str(m.get("display_name") or "-")]
        for m in (members if isinstance(members, list) else [])
        if isinstance(m, dict)
    ]
    return lines + "\n\n" + table(["MEMBER", "ROLE", "NAME"], member_rows)


# ---- commands -----------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    ch = _client(args).create_channel(args.name)
    if args.json:
        _json(ch)
    else:
        print(f"created channel {ch.get('name')!r}", file=sys.stderr)
        _out(str(ch.get("channel_id")))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    channels = _client(args).channels()
    if args.json:
        _json({"channels": channels})
        return EXIT_OK
    if not channels:
        _out("no channels")
        return EXIT_OK
    rows = [
        [
            str(c.get("channel_id", "?"))[:12],
            str(c.get("name", "?")),
            str(c.get("status", "?")),
            str(c.get("epoch", "?")),
            str(len(c.get("members") or [])),
        ]
        for c in channels
    ]
    _out(table(["CHANNEL", "NAME", "STATUS", "EPOCH", "MEMBERS"], rows))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    client = _client(args)
    ch = client.channel(str(_channel(client, args.channel)["channel_id"]))
    if args.json:
        _json(ch)
    else:
        _out(format_channel(ch))
    return EXIT_OK


def cmd_invite(args: argparse.Namespace) -> int:
    client = _client(args)
    ch = _channel(client, args.channel)
    invite_id = client.invite(str(ch["channel_id"]), args.peer_id)
    if args.json:
        _json({"invite_id": invite_id, "channel_id": ch["channel_id"], "peer_id": args.peer_id})
    else:
        _out(f"invited {args.peer_id} to {ch.get('name')!r} (invite {invite_id}); "
             "it joins once it accepts")
    return EXIT_OK


def _requested(args: argparse.Namespace, what: str, ch: dict[str, Any], text: str,
               peer: str | None = None) -> int:
    if args.json:
        body = {"channel_id": ch["channel_id"], "requested": what}
        if peer is not None:
            body["peer_id"] = peer
        _json(body)
    else:
        _out(text)
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    client = _client(args)
    ch = _channel(client, args.channel)
    client.remove_member(str(ch["channel_id"]), args.peer_id)
    return _requested(args, "remove", ch, f"removing {args.peer_id} from {ch.get('name')!r}",
                      args.peer_id)


def cmd_admin(args: argparse.Namespace) -> int:
    client = _client(args)
    ch = _channel(client, args.channel)
    client.make_admin(str(ch["channel_id"]), args.peer_id)
    return _requested(args, "admin", ch,
                      f"making {args.peer_id} an admin of {ch.get('name')!r}", args.peer_id)


def cmd_leave(args: argparse.Namespace) -> int:
    client = _client(args)
    ch = _channel(client, args.channel)
    client.leave(str(ch["channel_id"]))
    return _requested(args, "leave", ch, f"leaving {ch.get('name')!r}")


def cmd_send(args: argparse.Namespace) -> int:
    client = _client(args)
    ch = _channel(client, args.channel)
    message_id = client.send(str(ch["channel_id"]), args.text)
    if args.json:
        _json({"message_id": message_id, "channel_id": ch["channel_id"]})
    else:
        _out(f"sent {message_id}")
    return EXIT_OK


def _latest(client: ApiClient, cid: str, n: int) -> tuple[list[dict[str, Any]], str]:
    """The last ``n`` messages and the cursor after them."""
    kept: deque[dict[str, Any]] = deque(maxlen=n)
    cursor = "0"
    while True:
        page, following = client.messages(cid, cursor, _PAGE)
        kept.extend(page)
        if len(page) < _PAGE or following == cursor:
            return list(kept), following
        cursor = following


def cmd_messages(args: argparse.Namespace) -> int:
    client = _client(args)
    cid = str(_channel(client, args.channel)["channel_id"])
    # Subscribe before reading, so nothing arrives unseen between the two.
    waker = _Waker(client, cid) if args.follow else None
    messages, cursor = _latest(client, cid, args.limit)
    if not args.follow:
        if args.json:
            _json({"messages": messages, "next": cursor})
        elif not messages:
            _out("no messages")
        else:
            for m in messages:
                _out(format_message(m))
        return EXIT_OK
    assert waker is not None
    emit = _compact if args.json else (lambda m: _out(format_message(m)))
    for m in messages:
        emit(m)
    while True:  # until Ctrl-C (KeyboardInterrupt: exit 130)
        waker.wait(POLL_S)
        while True:
            page, following = client.messages(cid, cursor, _PAGE)
            for m in page:
                emit(m)
            cursor = following
            if len(page) < _PAGE:
                break


class _Waker:
    """Wakes ``messages --follow`` when the node announces a message in the channel.

    The cursor stays the source of truth: an event only says "look now". Messages this node
    sent itself come with no event, so the follower also looks every ``POLL_S``; if the event
    stream breaks (e.g. the node found us too slow), it is reopened on the next wait. The
    reading thread is a daemon, left blocked in its read when the command ends (closing the
    response under it would wait for the reader's lock).
    """

    def __init__(self, client: ApiClient, channel_id: str) -> None:
        self._client = client
        self._cid = channel_id
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._open()

    def _open(self) -> None:
        try:
            stream = self._client.events()
        except (ApiError, NodeUnreachable):
            return  # polling alone still works
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True,
                                        name="events")
        self._thread.start()

    def _pump(self, stream: EventStream) -> None:
        try:
            for name, data in stream:
                if name == "message" and data.get("channel_id") == self._cid:
                    self._wake.set()
        except (ApiError, NodeUnreachable):
            pass
        finally:
            self._wake.set()

    def wait(self, timeout: float) -> None:
        if self._thread is not None and not self._thread.is_alive():
            self._open()
        self._wake.wait(timeout)
        self._wake.clear()


def cmd_invites(args: argparse.Namespace) -> int:
    invites = _client(args).invites()
    if args.json:
        _json({"invites": invites})
        return EXIT_OK
    if not invites:
        _out("no pending invites")
        return EXIT_OK
    rows = [
        [
            str(i.get("invite_id", "?")),
            str(i.get("channel_id", "?"))[:12],
            str(i.get("name", "?")),
            str(i.get("from", "?")),
        ]
        for i in invites
    ]
    _out(table(["INVITE", "CHANNEL", "NAME", "FROM"], rows))
    return EXIT_OK


def cmd_accept(args: argparse.Namespace) -> int:
    channel_id = _client(args).accept_invite(args.invite_id)
    if args.json:
        _json({"invite_id": args.invite_id, "channel_id": channel_id})
    else:
        _out(f"accepted invite {args.invite_id}: channel {channel_id} appears once an admin "
             "has added this node")
    return EXIT_OK


def cmd_decline(args: argparse.Namespace) -> int:
    _client(args).decline_invite(args.invite_id)
    if args.json:
        _json({"invite_id": args.invite_id, "declined": True})
    else:
        _out(f"declined invite {args.invite_id}")
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    body = _client(args).set_profile(args.name)
    if args.json:
        _json(body)
    else:
        _out(f"display name set to {body.get('display_name')!r}")
    return EXIT_OK


# ---- parser -------------------------------------------------------------------------------------


def _nested_options() -> argparse.ArgumentParser:
    """--data-dir and --json for a sub-subcommand. SUPPRESS: an option given before the
    action (``invites --json accept ID``) is not reset by the action's parser."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir", metavar="D", default=argparse.SUPPRESS, help="data directory")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print JSON instead of text")
    return p


def add_commands(
    add: Callable[..., argparse.ArgumentParser], with_json: argparse.ArgumentParser
) -> None:
    """Register the channel commands on the ``spacepanda`` parser's subcommands."""
    nested = _nested_options()

    channel = add("channel", _usage, "manage channels: create, list, show, invite, remove, "
                  "admin, leave", with_json)
    actions = channel.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help, parents=[nested])
        p.set_defaults(func=func)
        return p

    action("create", cmd_create, "create a channel (this node its admin); print its id") \
        .add_argument("name", metavar="NAME")
    action("list", cmd_list, "list this node's channels")
    action("show", cmd_show, "show a channel: status, epoch, members and roles") \
        .add_argument("channel", metavar="CHANNEL")
    for name, func, help in [
        ("invite", cmd_invite, "invite a peer (admins only); it joins once it accepts"),
        ("remove", cmd_remove, "remove a member (admins only)"),
        ("admin", cmd_admin, "make a member an admin (admins only)"),
    ]:
        p = action(name, func, help)
        p.add_argument("channel", metavar="CHANNEL")
        p.add_argument("peer_id", metavar="PEER_ID", type=_peer_id)
    action("leave", cmd_leave, "leave a channel (the last admin must make another first)") \
        .add_argument("channel", metavar="CHANNEL")

    send = add("send", cmd_send, "send a text message to a channel", with_json)
    send.add_argument("channel", metavar="CHANNEL")
    send.add_argument("text", metavar="TEXT")

    messages = add("messages", cmd_messages, "show a channel's latest messages", with_json)
    messages.add_argument("channel", metavar="CHANNEL")
    messages.add_argument("--limit", metavar="N", type=_positive, default=100,
                          help="how many of the latest messages (default 100)")
    messages.add_argument("--follow", "-f", action="store_true",
                          help="then print new messages as they arrive, until Ctrl-C "
                          "(with --json: one JSON object per line)")

    invites = add("invites", cmd_invites, "list pending invites; accept or decline one",
                  with_json)
    answers = invites.add_subparsers(dest="action", metavar="ACTION")
    for name, func, help in [
        ("accept", cmd_accept, "accept an invite"),
        ("decline", cmd_decline, "decline an invite (the inviter is told)"),
    ]:
        p = answers.add_parser(name, help=help, description=help, parents=[nested])
        p.set_defaults(func=func)
        p.add_argument("invite_id", metavar="ID", type=_invite_id)

    profile = add("profile", cmd_profile, "set this node's display name in every channel",
                  with_json)
    profile.add_argument("--name", metavar="NAME", required=True, help="up to 64 UTF-8 bytes")


def _usage(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires ACTION
    raise SpacePandaError("an action is required")
