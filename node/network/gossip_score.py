"""Peer scores for the relay (gossipsub v1.1 in spirit, simplified; PROTOCOL.md 14.8).

A score is computed locally from what a peer did, never shared::

    score = min(topic_cap, sum over topics of (w1 * P1 + w2 * P2))
            + sum over topics of (w4 * P4^2)
            + w5 * P5
            + w7 * max(0, P7 - t7)^2

* P1, time in mesh: seconds since the peer was grafted into our mesh for the topic, capped.
* P2, first deliveries: valid messages the peer was the first to bring us, capped, decaying.
* P4, invalid messages: malformed envelopes (or ones the application reported invalid) the
  peer sent us, decaying slowly.
* P5, application score: set by the caller (e.g. a boost for co-members), not decaying.
* P7, behaviour penalty: broken IWANT promises, IHAVE/IWANT floods, GRAFTs during a backoff,
  undecodable frames, messages over the rate limit; decaying.

Left out of v1.1 on purpose: P3/P3b (mesh delivery rate), because the expected message rate of
a chat shard swings from zero to bursts and a fixed threshold would prune honest peers in quiet
shards; P6 (IP colocation), because the transport layer above knows addresses, not this core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PeerStats", "ScoreParams", "TopicStats"]


@dataclass(frozen=True)
class ScoreParams:
    time_in_mesh_weight: float = 0.01  # per second in the mesh...
    time_in_mesh_cap_s: float = 1000.0  # ...up to 10 points
    first_delivery_weight: float = 1.0
    first_delivery_cap: float = 40.0
    first_delivery_decay: float = 0.99  # per heartbeat (half-life ~69 s)
    topic_cap: float = 50.0  # cap on the positive per-topic sum
    invalid_weight: float = -30.0  # times the squared count: 1 -> -30, 2 -> -120
    invalid_decay: float = 0.997  # half-life ~230 s
    app_weight: float = 1.0
    behaviour_weight: float = -10.0  # times the squared excess over the threshold
    behaviour_threshold: float = 3.0
    behaviour_decay: float = 0.99
    decay_to_zero: float = 0.01
    # Thresholds: below 0 a peer leaves our meshes and is not grafted.
    gossip_threshold: float = -10.0  # no IHAVE/IWANT to or from it
    publish_threshold: float = -50.0  # our own messages do not go to it
    graylist_threshold: float = -80.0  # everything it sends is ignored
    opportunistic_graft_threshold: float = 1.0

    def __post_init__(self) -> None:
        if not (0 > self.gossip_threshold >= self.publish_threshold > self.graylist_threshold):
            raise ValueError("need 0 > gossip >= publish > graylist thresholds")
        if self.invalid_weight >= 0 or self.behaviour_weight >= 0:
            raise ValueError("penalty weights must be negative")
        for decay in (self.first_delivery_decay, self.invalid_decay, self.behaviour_decay):
            if not 0 < decay < 1:
                raise ValueError("decay factors are in (0, 1)")


@dataclass
class TopicStats:
    mesh_since: float | None = None  # when the peer entered our mesh for the topic
    first_deliveries: float = 0.0
    invalid: float = 0.0

    def idle(self) -> bool:
        return self.mesh_since is None and not self.first_deliveries and not self.invalid


@dataclass
class PeerStats:
    """What we count about one peer (kept for a while after it disconnects)."""

    topics: dict[int, TopicStats] = field(default_factory=dict)
    app: float = 0.0
    behaviour: float = 0.0

    def topic(self, topic: int) -> TopicStats:
        stats = self.topics.get(topic)
        if stats is None:
            stats = self.topics[topic] = TopicStats()
        return stats

    def score(self, p: ScoreParams, now: float) -> float:
        positive = negative = 0.0
        for t in self.topics.values():
            if t.mesh_since is not None:
                in_mesh = min(max(0.0, now - t.mesh_since), p.time_in_mesh_cap_s)
                positive += p.time_in_mesh_weight * in_mesh
            positive += p.first_delivery_weight * t.first_deliveries
            negative += p.invalid_weight * t.invalid * t.invalid
        score = min(positive, p.topic_cap) + negative + p.app_weight * self.app
        excess = self.behaviour - p.behaviour_threshold
        if excess > 0:
            score += p.behaviour_weight * excess * excess
        return score

    def first_delivery(self, p: ScoreParams, topic: int) -> None:
        t = self.topic(topic)
        t.first_deliveries = min(p.first_delivery_cap, t.first_deliveries + 1.0)

    def invalid_message(self, topic: int) -> None:
        self.topic(topic).invalid += 1.0

    def penalise(self, amount: float = 1.0) -> None:
        self.behaviour += amount

    def decay(self, p: ScoreParams) -> None:
        """One decay step (every heartbeat)."""
        z = p.decay_to_zero
        for topic, t in list(self.topics.items()):
            t.first_deliveries *= p.first_delivery_decay
            if t.first_deliveries < z:
                t.first_deliveries = 0.0
            t.invalid *= p.invalid_decay
            if t.invalid < z:
                t.invalid = 0.0
            if t.idle():
                del self.topics[topic]
        self.behaviour *= p.behaviour_decay
        if self.behaviour < z:
            self.behaviour = 0.0

    def forgettable(self) -> bool:
        """Nothing worth retaining after a disconnect."""
        return not self.behaviour and not self.app and all(
            not t.invalid for t in self.topics.values())
