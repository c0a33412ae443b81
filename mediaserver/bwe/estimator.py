"""One receiver's downlink, estimated on the sending side from transport-wide feedback.

For every packet the SFU sent a receiver, the receiver's feedback says whether and when it
arrived. Three things are learnt from that, as in libwebrtc's GoogCC:

- the acknowledged bitrate: what actually got through, over the last half second;
- a delay-based estimate (delay_based.py): queues growing mean we send too much;
- a loss-based estimate: above 10% loss cut in proportion, below 2% grow 8% a second.

The estimate is the lower of the two (and of the receiver's REMB, when it sends one). It can
only grow as fast as what we send lets it: an estimate far above our traffic proves nothing.
Probes (prober.py) settle that: a burst at a higher rate that arrives intact and in time
raises the estimate at once; one that queues or drops marks that rate as too much.

Times are seconds (time.monotonic); no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .delay_based import MAX_BPS, MIN_BPS, AimdRateControl, InterArrival, Trendline, Usage

ACKED_WINDOW_S = 0.5
LOSS_WINDOW_S = 1.0
LOSS_HIGH, LOSS_LOW = 0.10, 0.02
LOSS_UPDATE_S = 0.3  # plus an RTT: one loss decision per feedback round


@dataclass(slots=True)
class PacketResult:
    """What feedback says about one sent packet."""

    seq: int  # extended transport-wide sequence number
    send_s: float
    size: int  # bytes on the wire (RTP, before SRTP)
    arrival_s: float | None  # on the receiver's clock; None: reported lost
    probe: int = -1  # probe cluster id, or -1


class AckedBitrate:
    """Bytes acknowledged over the last half second of arrivals, as a rate."""

    __slots__ = ("_bytes", "_samples")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, arrival_s: float, size: int) -> None:
        self._samples.append((arrival_s, size))
        self._bytes += size
        while self._samples and arrival_s - self._samples[0][0] > ACKED_WINDOW_S:
            self._bytes -= self._samples.popleft()[1]

    @property
    def bps(self) -> float | None:
        if len(self._samples) < 2:
            return None
        span = self._samples[-1][0] - self._samples[0][0]
        if span < 0.1:
            return None  # too short a window to be a rate
        return (self._bytes - self._samples[0][1]) * 8 / span


LOSS_MIN_PACKETS = 20  # fewer: not a fraction worth acting on
LOSS_MAX_WINDOW_S = 5.0  # a slow flow (audio only) looks this far back for its packets


class LossBased:
    """Classic GoogCC loss controller over the last second of feedback (or further back, up
    to five seconds, until it holds LOSS_MIN_PACKETS packets)."""

    __slots__ = ("_counts", "_last_decision", "bps", "cut_at", "fraction")

    def __init__(self, start_bps: float) -> None:
        self.bps = start_bps
        self.fraction = 0.0
        self._counts: deque[tuple[float, int, int]] = deque()  # (time, lost, total)
        self._last_decision: float | None = None
        # Send time of the last cut: losses of packets sent before it were already paid for
        # (a queue that overflowed keeps reporting them for a round trip or two after).
        self.cut_at = -1e9

    def update(self, lost: int, total: int, now: float, rtt_s: float,
               acked_bps: float | None) -> float:
        counts = self._counts
        if total:
            counts.append((now, lost, total))
        while counts and now - counts[0][0] > LOSS_MAX_WINDOW_S:
            counts.popleft()
        lost_sum = total_sum = 0
        for at, lost_n, total_n in reversed(counts):
            if now - at > LOSS_WINDOW_S and total_sum >= LOSS_MIN_PACKETS:
                break
            lost_sum += lost_n
            total_sum += total_n
        if total_sum < LOSS_MIN_PACKETS:
            self.fraction = 0.0  # unknown, not "as bad as last time"
            return self.bps
        self.fraction = lost_sum / total_sum
        if self._last_decision is not None and \
                now - self._last_decision < LOSS_UPDATE_S + rtt_s:
            return self.bps
        dt = 1.0 if self._last_decision is None else min(now - self._last_decision, 1.0)
        self._last_decision = now
        if self.fraction > LOSS_HIGH:
            cut = self.bps * (1.0 - 0.5 * self.fraction)
            if acked_bps is not None:  # heavy loss: what arrives is the link, roughly
                cut = min(cut, max(acked_bps, cut / 2))
            self.bps = max(cut, MIN_BPS)
            self._counts.clear()  # the next decision judges traffic sent after this cut
            self.cut_at = now
        elif self.fraction < LOSS_LOW:
            self.bps = min(self.bps * 1.08 ** dt + 1000, MAX_BPS)
        return self.bps


class SendSideEstimator:
    """The estimate of one receiver's downlink (bits per second)."""

    __slots__ = ("_arrival", "_delay", "_last_heavy_loss", "_last_overuse", "_loss", "_trend",
                 "acked",
                 "remb_bps", "rtt_s")

    def __init__(self, start_bps: float) -> None:
        self._arrival = InterArrival()
        self._trend = Trendline()
        self._delay = AimdRateControl(start_bps)
        self._loss = LossBased(start_bps)
        self.acked = AckedBitrate()
        self.remb_bps: float | None = None
        self.rtt_s = 0.1
        self._last_overuse = -1e9
        self._last_heavy_loss = -1e9

    def on_feedback(self, results: Iterable[PacketResult], now: float) -> float:
        """Packets one feedback reported, in any order; returns the new estimate."""
        lost = total = 0
        usage = self._trend.usage
        cut_at = self._loss.cut_at
        for r in sorted(results, key=_by_seq):
            if r.send_s > cut_at:
                total += 1
            if r.arrival_s is None:
                lost += r.send_s > cut_at
                continue
            self.acked.add(r.arrival_s, r.size)
            deltas = self._arrival.add(r.send_s, r.arrival_s, r.size)
            if deltas is not None:
                usage = self._trend.update(deltas[0], deltas[1], r.arrival_s)
        if usage is Usage.OVERUSING:
            self._last_overuse = now
        acked = self.acked.bps
        self._delay.rtt_s = self.rtt_s
        self._delay.update(usage, acked, now)
        self._loss.update(lost, total, now, self.rtt_s, acked)
        if self._loss.fraction > LOSS_HIGH:
            self._last_heavy_loss = now
        return self.bps

    def on_probe_result(self, bps: float, now: float) -> None:
        """A probe got `bps` through intact: the link carries at least that."""
        if bps > self._delay.bps:
            self._delay.set_estimate(bps, now)
        if bps > self._loss.bps:
            self._loss.bps = bps

    def on_remb(self, bps: float) -> None:
        self.remb_bps = max(float(bps), MIN_BPS)

    @property
    def bps(self) -> float:
        estimate = min(self._delay.bps, self._loss.bps)
        if self.remb_bps is not None:
            estimate = min(estimate, self.remb_bps)
        return max(estimate, MIN_BPS)

    @property
    def last_overuse_s(self) -> float:
        return self._last_overuse

    @property
    def loss_fraction(self) -> float:
        return self._loss.fraction

    @property
    def usage(self) -> Usage:
        return self._trend.usage

    def congested(self, now: float, within_s: float = 1.0) -> bool:
        """Overuse or heavy loss within the last `within_s` seconds."""
        return (now - self._last_overuse < within_s or now - self._last_heavy_loss < within_s)

    def describe(self) -> dict[str, float | str | None]:
        acked = self.acked.bps
        return {"estimate_bps": round(self.bps), "delay_based_bps": round(self._delay.bps),
                "loss_based_bps": round(self._loss.bps),
                "acked_bps": None if acked is None else round(acked),
                "loss": round(self._loss.fraction, 4), "usage": self._trend.usage.value,
                "threshold_ms": round(self._trend.threshold, 2)}


def _by_seq(result: PacketResult) -> int:
    return result.seq
