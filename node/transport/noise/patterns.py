"""Handshake patterns as data (spec rev 34, sections 7 and 9), parsed once at import.

Each pattern is written in the spec's own arrow notation: pre-messages, then ``...``, then
the message patterns. The engine in ``handshake.py`` only interprets these token tuples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from node.transport.noise._misuse import local_error

__all__ = ["PATTERNS", "TOKENS", "HandshakePattern", "handshake_pattern"]

TOKENS = frozenset({"e", "s", "ee", "es", "se", "ss", "psk"})

_TABLE: dict[str, str] = {
    # One-way (7.4).
    "N": "<- s ... -> e, es",
    "K": "-> s <- s ... -> e, es, ss",
    "X": "<- s ... -> e, es, s, ss",
    # Interactive fundamental (7.5).
    "NN": "-> e <- e, ee",
    "NK": "<- s ... -> e, es <- e, ee",
    "NX": "-> e <- e, ee, s, es",
    "XN": "-> e <- e, ee -> s, se",
    "XK": "<- s ... -> e, es <- e, ee -> s, se",
    "XX": "-> e <- e, ee, s, es -> s, se",
    "KN": "-> s ... -> e <- e, ee, se",
    "KK": "-> s <- s ... -> e, es, ss <- e, ee, se",
    "KX": "-> s ... -> e <- e, ee, se, s, es",
    "IN": "-> e, s <- e, ee, se",
    "IK": "<- s ... -> e, es, s, ss <- e, ee, se",
    "IX": "-> e, s <- e, ee, se, s, es",
    # Deferred (7.6).
    "NK1": "<- s ... -> e <- e, ee, es",
    "NX1": "-> e <- e, ee, s -> es",
    "X1N": "-> e <- e, ee -> s <- se",
    "X1K": "<- s ... -> e, es <- e, ee -> s <- se",
    "XK1": "<- s ... -> e <- e, ee, es -> s, se",
    "X1K1": "<- s ... -> e <- e, ee, es -> s <- se",
    "X1X": "-> e <- e, ee, s, es -> s <- se",
    "XX1": "-> e <- e, ee, s -> es, s, se",
    "X1X1": "-> e <- e, ee, s -> es, s <- se",
    "K1N": "-> s ... -> e <- e, ee -> se",
    "K1K": "-> s <- s ... -> e, es <- e, ee -> se",
    "KK1": "-> s <- s ... -> e <- e, ee, se, es",
    "K1K1": "-> s <- s ... -> e <- e, ee, es -> se",
    "K1X": "-> s ... -> e <- e, ee, s, es -> se",
    "KX1": "-> s ... -> e <- e, ee, se, s -> es",
    "K1X1": "-> s ... -> e <- e, ee, s -> se, es",
    "I1N": "-> e, s <- e, ee -> se",
    "I1K": "<- s ... -> e, es, s <- e, ee -> se",
    "IK1": "<- s ... -> e, s <- e, ee, se, es",
    "I1K1": "<- s ... -> e, s <- e, ee, es -> se",
    "I1X": "-> e, s <- e, ee, s, es -> se",
    "IX1": "-> e, s <- e, ee, se, s -> es",
    "I1X1": "-> e, s <- e, ee, s -> se, es",
}

_ONE_WAY = frozenset({"N", "K", "X"})
_ARROW = re.compile(r"(->|<-)\s*([a-z0-9, ]*)")
_NAME = re.compile(r"([A-Z][A-Z0-9]*)((?:[a-z][a-z0-9]*)(?:\+[a-z][a-z0-9]*)*)?")
_PSK = re.compile(r"psk([0-9]+)")

Tokens = tuple[str, ...]


@dataclass(frozen=True)
class HandshakePattern:
    """Pre-message and message token lists; message ``i`` is sent by the initiator iff ``i``
    is even."""

    name: str
    pre_initiator: Tokens
    pre_responder: Tokens
    messages: tuple[Tokens, ...]
    one_way: bool

    @property
    def psk_count(self) -> int:
        return sum(m.count("psk") for m in self.messages)


def _arrows(text: str) -> list[tuple[bool, Tokens]]:
    out = []
    for arrow, body in _ARROW.findall(text):
        tokens = tuple(t.strip() for t in body.split(",") if t.strip())
        if not set(tokens) <= TOKENS:
            raise ValueError(f"unknown token in {text!r}")
        out.append((arrow == "->", tokens))
    return out


def _parse(name: str, text: str) -> HandshakePattern:
    pre_text, _, body = text.rpartition("...")
    pre_initiator: Tokens = ()
    pre_responder: Tokens = ()
    for from_initiator, tokens in _arrows(pre_text):
        if from_initiator:
            pre_initiator = tokens
        else:
            pre_responder = tokens
    msgs = _arrows(body)
    for i, (from_initiator, _tokens) in enumerate(msgs):
        if from_initiator != (i % 2 == 0):
            raise ValueError(f"pattern {name} does not alternate")
    return HandshakePattern(
        name, pre_initiator, pre_responder, tuple(t for _, t in msgs), name in _ONE_WAY
    )


PATTERNS: dict[str, HandshakePattern] = {n: _parse(n, t) for n, t in _TABLE.items()}


def _apply_psk(pattern: HandshakePattern, modifier: str) -> HandshakePattern:
    m = _PSK.fullmatch(modifier)
    if m is None:
        raise local_error(f"unsupported pattern modifier {modifier!r}")
    index = int(m.group(1))
    messages = list(pattern.messages)
    if index == 0:
        messages[0] = ("psk", *messages[0])
    elif index <= len(messages):
        messages[index - 1] = (*messages[index - 1], "psk")
    else:
        raise local_error(f"{modifier} is beyond the last message")
    return HandshakePattern(
        pattern.name,
        pattern.pre_initiator,
        pattern.pre_responder,
        tuple(messages),
        pattern.one_way,
    )


def handshake_pattern(name: str) -> HandshakePattern:
    """The pattern for a name such as ``XX``, ``XXpsk3`` or ``NNpsk0+psk2``."""
    m = _NAME.fullmatch(name)
    if m is None or m.group(1) not in PATTERNS:
        raise local_error(f"unknown handshake pattern {name!r}")
    pattern = PATTERNS[m.group(1)]
    modifiers = m.group(2).split("+") if m.group(2) else []
    if len(set(modifiers)) != len(modifiers):
        raise local_error(f"repeated modifier in {name!r}")
    for modifier in modifiers:
        pattern = _apply_psk(pattern, modifier)
    return HandshakePattern(
        name, pattern.pre_initiator, pattern.pre_responder, pattern.messages, pattern.one_way
    )
