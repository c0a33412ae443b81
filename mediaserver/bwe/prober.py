"""Probing a receiver's downlink for more than we send it.

An estimate only grows as fast as the traffic that confirms it: a receiver thinned to the
base layer, or paused to audio only, receives too little to show that the link came back.
So when the allocation wants more than the estimate allows, the SFU sends padding on top of
the media for half a second, at a rate stepping up from the estimate (at most doubling it),
and reads the transport-wide feedback of everything sent meanwhile:

- it arrived (at least 90% of the rate, under 5% loss, no growing delay): the link carries
  that much, the estimate jumps there and the next, higher, step may follow a second later;
- it did not: that rate is too much for now; the next probe waits twice as long and stays
  within 25% of the rate that failed.

Half a second, not libwebrtc's 15-50 ms clusters: a store link shaped by a token bucket lets
a short burst through at line rate, and only a probe longer than the bucket measures the
rate behind it. Pure logic with a virtual clock; the router sends the padding.
"""

from __future__ import annotations

from dataclasses import dataclass

from .estimator import PacketResult

PROBE_S = 0.5
MAX_STEP = 2.0
SUCCESS_RATIO = 0.9
MAX_LOSS = 0.05
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 4.0  # a link that comes back is found within this, plus a probe
FAILED_MARGIN = 1.0  # within FAILED_MEMORY_S, never above a rate that failed
FAILED_MEMORY_S = 5.0
MIN_GAIN = 1.1  # not worth probing for less than 10% more
SETTLE_S = 0.3  # feedback of the last probe packets: wait this long after the end
SUCCESS_BACKOFF_S = 0.5  # the next step up may follow this soon


@dataclass(slots=True)
class ProbeCluster:
    id: int
    target_bps: float  # total rate to send (media plus padding)
    start_s: float
    end_s: float
    estimate_bps: float = 0.0  # the estimate it started from


@dataclass(slots=True)
class ProbeOutcome:
    cluster: ProbeCluster
    success: bool
    send_bps: float
    receive_bps: float
    loss: float


class ProbeController:
    __slots__ = ("_bytes_acked", "_bytes_sent", "_first_arrival", "_last_arrival", "_lost",
                 "_next_id", "_overused", "_packets", "backoff_s", "cluster", "failed_at",
                 "failed_bps", "last_end", "streak")

    def __init__(self) -> None:
        self.cluster: ProbeCluster | None = None
        self._next_id = 0
        self.backoff_s = FIRST_BACKOFF_S
        self.last_end = -1e9
        self.failed_bps: float | None = None
        self.failed_at = -1e9
        self.streak = 0  # probes in a row that got through
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._bytes_sent = self._bytes_acked = self._packets = self._lost = 0
        self._first_arrival: float | None = None
        self._last_arrival: float | None = None
        self._overused = False

    def want(self, now: float, estimate_bps: float, desired_bps: float, *, congested: bool,
             step_bps: float = 0.0, recently_congested: bool = False,
             cap_bps: float | None = None) -> ProbeCluster | None:
        """A new probe to start now, or None.

        `desired_bps`: everything the receiver could use; `step_bps`: what one more layer
        needs. Near a limit seen lately (`recently_congested`) the probe asks for one more
        layer only, so it overshoots the link little; otherwise it doubles the estimate, so
        a link that came back is found in a few probes.
        """
        if self.cluster is not None or congested or now - self.last_end < self.backoff_s:
            return None
        if recently_congested and not self.streak:
            target = min(desired_bps, (estimate_bps + step_bps) * MIN_GAIN)
        else:  # nothing seen lately, or the last probe got through: double
            target = min(desired_bps, estimate_bps * MAX_STEP)
        target = min(target, estimate_bps * MAX_STEP)
        if cap_bps is not None:
            target = min(target, cap_bps)
        if self.failed_bps is not None and now - self.failed_at < FAILED_MEMORY_S:
            target = min(target, self.failed_bps * FAILED_MARGIN)
        if target < estimate_bps * MIN_GAIN:
            return None
        self._next_id += 1
        self.cluster = ProbeCluster(self._next_id, target, now, now + PROBE_S, estimate_bps)
        self._reset_counts()
        return self.cluster

    def on_results(self, results: list[PacketResult], overuse_at: float) -> None:
        """Feedback for packets sent during the probe (media and padding alike);
        `overuse_at`: when the delay-based detector last signalled overuse."""
        cluster = self.cluster
        if cluster is None:
            return
        # The first half may pass through a token bucket's burst: judge the second half.
        judged_from = cluster.start_s + PROBE_S / 2
        for r in results:
            if not cluster.start_s <= r.send_s <= cluster.end_s:
                continue
            if r.send_s >= judged_from:
                self._packets += 1
                self._bytes_sent += r.size
                if r.arrival_s is None:
                    self._lost += 1
                else:
                    self._bytes_acked += r.size
                    if self._first_arrival is None or r.arrival_s < self._first_arrival:
                        self._first_arrival = r.arrival_s
                    if self._last_arrival is None or r.arrival_s > self._last_arrival:
                        self._last_arrival = r.arrival_s
        self._overused |= overuse_at >= cluster.start_s

    def finish(self, now: float) -> ProbeOutcome | None:
        """Judge the probe once its feedback had time to come back."""
        cluster = self.cluster
        if cluster is None or now < cluster.end_s + SETTLE_S:
            return None
        self.cluster = None
        self.last_end = now
        span = cluster.end_s - (cluster.start_s + PROBE_S / 2)
        send_bps = self._bytes_sent * 8 / span
        arrival_span = (self._last_arrival - self._first_arrival
                        if self._first_arrival is not None and self._last_arrival is not None
                        else 0.0)
        receive_bps = self._bytes_acked * 8 / max(arrival_span, span)
        loss = self._lost / self._packets if self._packets else 1.0
        success = (self._packets >= 5 and not self._overused and loss <= MAX_LOSS
                   and receive_bps >= SUCCESS_RATIO * cluster.target_bps)
        if success:
            self.streak += 1
            self.backoff_s = SUCCESS_BACKOFF_S
            if self.failed_bps is not None and receive_bps >= SUCCESS_RATIO * self.failed_bps:
                self.failed_bps = None  # the link now carries what failed before
        else:
            self.streak = 0
            self.failed_bps = cluster.target_bps
            self.failed_at = now
            self.backoff_s = min(self.backoff_s * 2, MAX_BACKOFF_S)
        return ProbeOutcome(cluster, success, send_bps, receive_bps, loss)

    def padding_bps(self, now: float, media_bps: float) -> float:
        """Padding to add to the media right now (0 outside a probe)."""
        cluster = self.cluster
        if cluster is None or not cluster.start_s <= now < cluster.end_s:
            return 0.0
        return max(cluster.target_bps - media_bps, 0.0)
