"""A simulated bottleneck link and sender for closed-loop tests of the bandwidth estimator.

The link is what `tc tbf` makes of a veth: a FIFO served at a fixed rate with a drop-tail
queue, plus a one-way propagation delay and optional random loss. The sender paces media at
the estimator's rate (up to what its encoders make) in 5 ms ticks; the receiver reports every
packet in transport-wide feedback every 50 ms, as Chromium does. Everything runs on a
virtual clock: a 30 s run takes milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from mediaserver.bwe.estimator import PacketResult, SendSideEstimator

TICK_S = 0.005
FEEDBACK_S = 0.05
PACKET = 1200


@dataclass
class Link:
    rate_bps: float
    queue_bytes: int = 32_000  # like `tc tbf ... burst 16kb latency 300ms` at ~1 Mbit/s
    delay_s: float = 0.02
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    busy_until: float = 0.0
    max_queue_delay_s: float = 0.0

    def carry(self, t: float, size: int) -> float | None:
        """Arrival time of a packet sent at `t`, or None if dropped."""
        backlog_s = max(0.0, self.busy_until - t)
        if backlog_s * self.rate_bps / 8 + size > self.queue_bytes:
            return None
        if self.loss and self.rng.random() < self.loss:
            return None
        start = max(t, self.busy_until)
        self.busy_until = start + size * 8 / self.rate_bps
        self.max_queue_delay_s = max(self.max_queue_delay_s, self.busy_until - t)
        return self.busy_until + self.delay_s


@dataclass
class Trace:
    times: list[float] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)
    sent_bps: list[float] = field(default_factory=list)
    queue_delay_s: list[float] = field(default_factory=list)

    def at(self, t: float) -> float:
        """The estimate at time t."""
        for time, estimate in zip(reversed(self.times), reversed(self.estimates),
                                  strict=True):
            if time <= t:
                return estimate
        return self.estimates[0]

    def window(self, t0: float, t1: float, values: list[float]) -> list[float]:
        return [v for t, v in zip(self.times, values, strict=True) if t0 <= t < t1]


def run(link_rate: Callable[[float], float], seconds: float, *, start_bps: float = 1_000_000,
        max_media_bps: float = 2_500_000, loss: float = 0.0, feedback_loss: float = 0.0,
        shuffle_feedback: bool = False, seed: int = 1,
        estimator: SendSideEstimator | None = None) -> tuple[Trace, SendSideEstimator]:
    rng = random.Random(seed)
    link = Link(link_rate(0.0), loss=loss, rng=random.Random(seed + 1))
    est = estimator or SendSideEstimator(start_bps)
    trace = Trace()
    pending: list[tuple[float, PacketResult]] = []  # (receiver sees it at, result)
    in_flight: list[tuple[float, list[PacketResult]]] = []  # (feedback reaches us at, ...)
    seq = 0
    credit = 0.0
    next_feedback = FEEDBACK_S
    sent_window: list[tuple[float, int]] = []
    t = 0.0
    while t < seconds:
        link.rate_bps = link_rate(t)
        rate = min(est.bps, max_media_bps)
        credit += rate * TICK_S / 8
        while credit >= PACKET:
            credit -= PACKET
            arrival = link.carry(t, PACKET)
            pending.append((arrival if arrival is not None else t + link.delay_s,
                            PacketResult(seq, t, PACKET, arrival)))
            sent_window.append((t, PACKET))
            seq += 1
        if t >= next_feedback:
            next_feedback += FEEDBACK_S
            due = [r for when, r in pending if when <= t]
            pending = [(when, r) for when, r in pending if when > t]
            if due and rng.random() >= feedback_loss:
                if shuffle_feedback:
                    rng.shuffle(due)
                in_flight.append((t + link.delay_s, due))
        for item in [f for f in in_flight if f[0] <= t]:
            in_flight.remove(item)
            est.on_feedback(item[1], t)
        sent_window = [(s, n) for s, n in sent_window if t - s < 1.0]
        trace.times.append(t)
        trace.estimates.append(est.bps)
        trace.sent_bps.append(sum(n for _, n in sent_window) * 8)
        trace.queue_delay_s.append(max(0.0, link.busy_until - t))
        t += TICK_S
    return trace, est


@dataclass
class CallTrace:
    times: list[float] = field(default_factory=list)
    layers: list[dict[object, int]] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)
    queue_delay_s: list[float] = field(default_factory=list)
    probes: list[tuple[float, float, bool]] = field(default_factory=list)  # (t, target, ok)

    def layer_at(self, key: object, t: float) -> int:
        i = min(range(len(self.times)), key=lambda k: abs(self.times[k] - t))
        return self.layers[i].get(key, -1)

    def first_time(self, t0: float, condition: Callable[[dict[object, int]], bool]
                   ) -> float | None:
        for t, layers in zip(self.times, self.layers, strict=True):
            if t >= t0 and condition(layers):
                return t - t0
        return None


def run_receiver(link_rate: Callable[[float], float], seconds: float,
                 demands: list, *, floor_bps: float = 100_000, seed: int = 1,
                 decide_every_s: float = 0.1, loss: float = 0.0,
                 queue_bytes: int = 32_000) -> CallTrace:
    """A receiver of `demands` (StreamDemand) behind a link: the SFU sends what the
    DownlinkController allocates (plus probe padding) and reacts to the feedback."""
    from mediaserver.bwe.downlink import DownlinkController

    rng = random.Random(seed)
    link = Link(link_rate(0.0), queue_bytes=queue_bytes, loss=loss,
                rng=random.Random(seed + 1))
    ctl = DownlinkController(floor_bps)
    trace = CallTrace()
    pending: list[tuple[float, PacketResult]] = []
    in_flight: list[tuple[float, list[PacketResult]]] = []
    seq = 0
    credits = [0.0, 0.0, 0.0]
    next_feedback = FEEDBACK_S
    next_decision = 0.0
    media_bps = audio_bps = video_bps = 0.0
    audio_size = 120.0
    t = 0.0
    while t < seconds:
        link.rate_bps = link_rate(t)
        if t >= next_decision:
            next_decision += decide_every_s
            for d in demands:
                d.current = ctl.allocation.layers.get(d.key, -1) if ctl.allocation else -1
            decision = ctl.update(t, demands)
            if decision.outcome is not None:
                o = decision.outcome
                trace.probes.append((t, o.cluster.target_bps, o.success))
            audio = [d for d in demands if d.kind == "audio"]
            audio_bps = sum(d.layers[-1] for d in audio)
            audio_size = max(60.0, audio_bps / max(1, len(audio)) / 50 / 8)
            video_bps = sum(d.layers[layer] for d in demands if d.kind == "video"
                            and (layer := decision.allocation.layers[d.key]) >= 0)
            media_bps = audio_bps + video_bps
            trace.times.append(t)
            trace.layers.append(dict(decision.allocation.layers))
            trace.estimates.append(ctl.estimator.bps)
            trace.queue_delay_s.append(max(0.0, link.busy_until - t))
        # Audio: 50 small packets a second per stream; video: full packets; probes:
        # padding-only packets (255 bytes of padding and a header).
        padding = ctl.padding_bps(t, media_bps)
        for flow, (rate, size) in enumerate(((audio_bps, audio_size), (video_bps, PACKET),
                                             (padding, 275))):
            if rate <= 0:
                credits[flow] = 0.0
                continue
            credits[flow] += rate * TICK_S / 8
            while credits[flow] >= size:
                credits[flow] -= size
                arrival = link.carry(t, int(size))
                pending.append((arrival if arrival is not None else t + link.delay_s,
                                PacketResult(seq, t, int(size), arrival)))
                seq += 1
        if t >= next_feedback:
            next_feedback += FEEDBACK_S
            due = [r for when, r in pending if when <= t]
            pending = [(when, r) for when, r in pending if when > t]
            if due and rng.random() >= 0.0:
                in_flight.append((t + link.delay_s, due))
        for item in [f for f in in_flight if f[0] <= t]:
            in_flight.remove(item)
            ctl.on_feedback(item[1], t)
        t += TICK_S
    return trace
