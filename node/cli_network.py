"""``spacepanda network``: the relay, the mailboxes and delivery (``GET /v1/network``).

Text is a compact summary an operator reads at a glance; ``--json`` prints the API body as it
is (field names documented in ``openapi.json``, schema ``Network``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from typing import Any

from node.cli import EXIT_OK, _client, _json, _out, duration, size, table

__all__ = ["add_commands", "format_network"]


def _d(value: object) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _n(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _nonzero(counts: Mapping[str, Any]) -> str:
    """``key_full 3, rate_limited 1`` (largest first), or ``none``."""
    found = sorted(((k, _n(v)) for k, v in counts.items() if _n(v) > 0),
                   key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v}" for k, v in found) or "none"


def _score(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _short(peer_id: str) -> str:
    return f"{peer_id[:8]}…{peer_id[-6:]}" if len(peer_id) > 16 else peer_id


def _relay_rows(relay: dict[str, Any]) -> list[list[str]]:
    listed_peers = relay.get("peers")
    peers = listed_peers if isinstance(listed_peers, list) else []
    scores, counters = _d(relay.get("scores")), _d(relay.get("counters"))
    caches, stem = _d(relay.get("caches")), _d(relay.get("stem"))
    rows = [["relay", f"{_n(relay.get('shards'))} shard(s), {len(peers)} peer(s), scores "
                      f"{_score(scores.get('min'))} .. {_score(scores.get('max'))} (median "
                      f"{_score(scores.get('median'))}), {_n(scores.get('graylisted'))} "
                      f"graylisted"]]
    for mesh in relay.get("meshes") or []:
        m = _d(mesh)
        members = [str(p) for p in m.get("mesh") or []]
        listed = " ".join(_short(p) for p in members[:4]) + (" …" if len(members) > 4 else "")
        rows.append([f"  shard {_n(m.get('shard'))}",
                     f"mesh {len(members)} of {_n(m.get('subscribers'))} relaying, fanout "
                     f"{_n(m.get('fanout'))}" + (f": {listed}" if members else "")])
    rows += [
        ["  messages", f"{_n(counters.get('published'))} published, "
                       f"{_n(counters.get('forwarded'))} forwarded, "
                       f"{_n(counters.get('duplicates'))} duplicates, "
                       f"{_n(counters.get('invalid'))} invalid, "
                       f"{_n(counters.get('rate_limited'))} rate-limited"],
        ["  iwant", f"{_n(counters.get('iwant_served'))} served, "
                    f"{_n(counters.get('iwant_missing')) + _n(counters.get('iwant_repeated'))} "
                    f"refused, {_n(counters.get('iwant_floods'))} floods"],
        ["  stem", f"{_n(stem.get('pending'))} under embargo, {_n(stem.get('sent'))} sent, "
                   f"{_n(stem.get('relayed'))} relayed, {_n(stem.get('fluffed'))} fluffed"],
        ["  caches", f"seen {_n(caches.get('seen'))}, messages "
                     f"{_n(caches.get('message_cache'))} "
                     f"({size(_n(caches.get('message_cache_bytes')))})"],
    ]
    return rows


def _mailbox_rows(mailboxes: dict[str, Any]) -> list[list[str]]:
    holder, client = _d(mailboxes.get("holder")), _d(mailboxes.get("client"))
    quotas = _d(holder.get("quotas"))
    total = _n(quotas.get("total_bytes"))
    used = _n(holder.get("bytes"))
    share = f", {100 * used / total:.1f}% of {size(total)}" if total else ""
    fetch_refused = sum(_n(v) for v in _d(holder.get("fetch_refused")).values())
    client_refused = sum(_n(v) for v in _d(client.get("fetch_refused")).values())
    return [
        ["mailboxes", f"holding {_n(holder.get('envelopes'))} envelope(s) ({size(used)}{share}) "
                      f"under {_n(holder.get('keys'))} key(s) from "
                      f"{_n(holder.get('uploaders'))} uploader(s)"],
        ["  stores", f"{_n(holder.get('stored'))} stored, {_n(holder.get('duplicates'))} "
                     f"duplicates, refused: {_nonzero(_d(holder.get('refused')))}"],
        ["  fetches", f"{_n(holder.get('fetch_requests'))} ({fetch_refused} refused), "
                      f"{_n(holder.get('fetched_envelopes'))} envelopes served, "
                      f"{_n(holder.get('expired'))} expired"],
        ["  client", f"{_n(client.get('placements'))} placed ({_n(client.get('placed_copies'))} "
                     f"copies), {_n(client.get('collected_envelopes'))} collected; failures: "
                     f"{_n(client.get('timeouts'))} timeouts, "
                     f"{_n(client.get('dial_failures'))} dials, {client_refused} refused"],
    ]


def _delivery_rows(delivery: dict[str, Any], now: float) -> list[list[str]]:
    outbox, fallback = _d(delivery.get("outbox")), _d(delivery.get("fallback"))
    queues, catch_up = _d(delivery.get("queues")), _d(delivery.get("catch_up"))
    synced = catch_up.get("synced_at")
    synced_text = (f"synced {duration(now - float(synced))} ago"
                   if isinstance(synced, int | float) and not isinstance(synced, bool)
                   else "never synced completely")
    busy = {**queues, **_d(delivery.get("dispatch"))}
    return [
        ["delivery", f"outbox {_n(outbox.get('items'))} ({_n(outbox.get('owed'))} owed, "
                     f"{_n(outbox.get('in_flight'))} in flight, {_n(outbox.get('jittered'))} "
                     f"jittered), {_n(delivery.get('held'))} held, "
                     f"{_n(delivery.get('unrouted'))} unrouted; jitter "
                     f"{delivery.get('jitter', '?')}"],
        ["  fallback", f"{_n(fallback.get('tracked'))} straggler(s) now; "
                       f"{_n(fallback.get('relayed'))} relayed, "
                       f"{_n(fallback.get('placements'))} placements "
                       f"({_n(fallback.get('placed_copies'))} copies), "
                       f"{_n(fallback.get('stored'))} stored"],
        ["  catch-up", f"{_n(catch_up.get('runs'))} run(s), {synced_text}"],
        ["  queues", _nonzero(busy)],
    ]


def format_network(body: dict[str, Any], now: float) -> str:
    """The readable ``spacepanda network`` summary; tolerant of missing or extra fields."""
    rows = [
        *_relay_rows(_d(body.get("relay"))),
        *_mailbox_rows(_d(body.get("mailboxes"))),
        *_delivery_rows(_d(body.get("delivery")), now),
    ]
    return table(["", ""], rows).split("\n", 1)[1]


def cmd_network(args: argparse.Namespace) -> int:
    body = _client(args).network()
    if args.json:
        _json(body)
    else:
        _out(format_network(body, time.time()))
    return EXIT_OK


def add_commands(add: Callable[..., argparse.ArgumentParser],
                 with_json: argparse.ArgumentParser) -> None:
    add("network", cmd_network,
        "show the relay meshes and peer scores, mailbox usage and delivery queues", with_json)
