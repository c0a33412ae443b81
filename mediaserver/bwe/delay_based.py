"""Delay-based bandwidth estimate from transport-wide feedback, after libwebrtc's GoogCC.

A link that carries less than we send queues the excess: packets sent at a steady spacing
arrive further and further apart. The trendline filter turns per-group delay variation into
a slope (how fast the queue grows); an adaptive threshold turns the slope into "overusing",
"normal" or "underusing"; an AIMD controller turns that into a rate: cut to 85% of what
actually got through on overuse, grow by 8% a second (or about a packet per round trip once
near the capacity found before) otherwise, and never grow far above what is acknowledged,
since an estimate beyond what we send proves nothing (that is what probes are for).

Plain arithmetic on (send time, arrival time, size) of acknowledged packets; times in
seconds. Constants are libwebrtc's (trendline_estimator.cc, aimd_rate_control.cc).
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

BURST_S = 0.005  # packets sent within 5 ms of a group's first one form one group
WINDOW = 20  # (arrival time, smoothed delay) samples in the regression
SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
MAX_DELTAS = 60
OVERUSE_TIME_S = 0.010
K_UP, K_DOWN = 0.0087, 0.039
THRESHOLD_MIN, THRESHOLD_MAX = 6.0, 600.0  # ms
BETA = 0.85
REDECREASE_S = 0.2
MIN_BPS = 30_000.0
MAX_BPS = 20_000_000.0


class Usage(Enum):
    NORMAL = "normal"
    OVERUSING = "overusing"
    UNDERUSING = "underusing"


class Trendline:
    """Slope of the queueing delay over arrival time, and the usage it means."""

    __slots__ = ("_accumulated", "_first_arrival", "_last_update", "_num_deltas",
                 "_overuse_count", "_overuse_time", "_prev_trend", "_samples", "_smoothed",
                 "threshold", "usage")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._first_arrival: float | None = None
        self._num_deltas = 0
        self._prev_trend = 0.0
        self._overuse_time = -1.0
        self._overuse_count = 0
        self._last_update: float | None = None
        self.threshold = 12.5  # ms
        self.usage = Usage.NORMAL

    def update(self, send_delta_s: float, arrival_delta_s: float, arrival_s: float) -> Usage:
        """One group-to-group delta (seconds)."""
        delay_ms = (arrival_delta_s - send_delta_s) * 1000.0
        self._num_deltas = min(self._num_deltas + 1, 1000)
        self._accumulated += delay_ms
        self._smoothed = SMOOTHING * self._smoothed + (1 - SMOOTHING) * self._accumulated
        if self._first_arrival is None:
            self._first_arrival = arrival_s
        self._samples.append(((arrival_s - self._first_arrival) * 1000.0, self._smoothed))
        trend = self._prev_trend
        if len(self._samples) == WINDOW:
            trend = _slope(self._samples, trend)
        self._detect(trend, send_delta_s * 1000.0, arrival_s)
        return self.usage

    def _detect(self, trend: float, send_delta_ms: float, now: float) -> None:
        if self._num_deltas < 2:
            self._prev_trend = trend
            return
        modified = min(self._num_deltas, MAX_DELTAS) * trend * THRESHOLD_GAIN
        if modified > self.threshold:
            if self._overuse_time < 0:
                self._overuse_time = send_delta_ms / 2  # we only know it started in between
            else:
                self._overuse_time += send_delta_ms
            self._overuse_count += 1
            if self._overuse_time > OVERUSE_TIME_S * 1000 and self._overuse_count > 1 \
                    and trend >= self._prev_trend:
                self._overuse_time = 0.0
                self._overuse_count = 0
                self.usage = Usage.OVERUSING
        elif modified < -self.threshold:
            self._overuse_time = -1.0
            self._overuse_count = 0
            self.usage = Usage.UNDERUSING
        else:
            self._overuse_time = -1.0
            self._overuse_count = 0
            self.usage = Usage.NORMAL
        self._prev_trend = trend
        self._adapt_threshold(modified, now)

    def _adapt_threshold(self, modified: float, now: float) -> None:
        if self._last_update is None:
            self._last_update = now
        if abs(modified) > self.threshold + 15.0:
            # A spike (a route change, a paused tab) says nothing of the queue: ignore it.
            self._last_update = now
            return
        k = K_DOWN if abs(modified) < self.threshold else K_UP
        dt_ms = min((now - self._last_update) * 1000.0, 100.0)
        self.threshold += k * (abs(modified) - self.threshold) * dt_ms
        self.threshold = min(max(self.threshold, THRESHOLD_MIN), THRESHOLD_MAX)
        self._last_update = now


def _slope(samples: deque[tuple[float, float]], fallback: float) -> float:
    n = len(samples)
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in samples)
    den = sum((x - mean_x) ** 2 for x, _ in samples)
    return fallback if den == 0 else num / den


class _Group:
    __slots__ = ("arrival", "first_send", "last_send", "size")

    def __init__(self, send: float, arrival: float, size: int) -> None:
        self.first_send = self.last_send = send
        self.arrival = arrival
        self.size = size


class InterArrival:
    """Packets (in send order) into groups, and group-to-group deltas."""

    __slots__ = ("_current", "_previous")

    def __init__(self) -> None:
        self._current: _Group | None = None
        self._previous: _Group | None = None

    def add(self, send: float, arrival: float, size: int) -> tuple[float, float] | None:
        """(send delta, arrival delta) between the two last complete groups, when one just
        completed; None otherwise."""
        current = self._current
        if current is None:
            self._current = _Group(send, arrival, size)
            return None
        if send < current.first_send:
            return None  # reordered before the group: nothing to learn from it
        if send - current.first_send <= BURST_S:
            current.last_send = max(current.last_send, send)
            current.arrival = max(current.arrival, arrival)
            current.size += size
            return None
        previous, self._previous = self._previous, current
        self._current = _Group(send, arrival, size)
        if previous is None:
            return None
        return (current.last_send - previous.last_send, current.arrival - previous.arrival)


class RateState(Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


class AimdRateControl:
    """The delay-based rate: multiplicative decrease on overuse, increase otherwise."""

    __slots__ = ("_capacity", "_capacity_var", "_decreased_at", "_last_change", "bps",
                 "rtt_s", "state")

    def __init__(self, start_bps: float) -> None:
        self.bps = start_bps
        self.state = RateState.HOLD
        self.rtt_s = 0.2
        self._last_change: float | None = None
        self._capacity: float | None = None  # average of rates at which we saw overuse
        self._capacity_var = 0.4
        self._decreased_at: float | None = None

    def set_estimate(self, bps: float, now: float) -> None:
        """A probe proved the link carries this (or a start value)."""
        self.bps = min(max(bps, MIN_BPS), MAX_BPS)
        self._last_change = now

    def update(self, usage: Usage, acked_bps: float | None, now: float) -> float:
        if usage is Usage.OVERUSING:
            self.state = RateState.DECREASE
        elif usage is Usage.NORMAL and self._decreased_at is not None:
            self._decreased_at = None  # the episode is over
            self.state = RateState.HOLD
        elif usage is Usage.UNDERUSING:
            self.state = RateState.HOLD  # the queue drains: wait before going up again
        elif self.state is not RateState.INCREASE:
            self.state = RateState.INCREASE
        dt = 0.0 if self._last_change is None else min(now - self._last_change, 1.0)
        if self.state is RateState.INCREASE:
            if acked_bps is not None and self.bps > 1.5 * acked_bps + 10_000:
                # Far above what gets through: our traffic is the limit, not the link.
                self._last_change = now
                return self.bps
            if self._near_capacity():
                # About one packet per round trip (libwebrtc's near-max increase).
                frame_bits = self.bps / 30
                packet_bits = frame_bits / max(1, math.ceil(frame_bits / (1200 * 8)))
                increase = max(4000.0, packet_bits / (self.rtt_s + 0.1)) * dt
            else:
                increase = self.bps * (math.pow(1.08, dt) - 1.0)
            self.bps = min(self.bps + increase, MAX_BPS)
        elif self.state is RateState.DECREASE:
            # Once per overuse episode (again only if it lasts another second): the queue
            # takes a while to drain after a cut, and what is acknowledged meanwhile falls
            # with what we send, so cutting on every feedback would spiral down.
            if self._decreased_at is None or now - self._decreased_at >= REDECREASE_S:
                base = acked_bps if acked_bps is not None else self.bps
                new = BETA * base
                if new < self.bps:
                    self._learn_capacity(base)
                    self.bps = max(new, MIN_BPS)
                self._decreased_at = now
            self.state = RateState.HOLD
        self._last_change = now
        return self.bps

    def _learn_capacity(self, bps: float) -> None:
        if self._capacity is not None and \
                abs(bps - self._capacity) > 3 * math.sqrt(self._capacity_var * self._capacity):
            self._capacity = None  # the link changed: forget what we knew
        if self._capacity is None:
            self._capacity = bps
        else:
            self._capacity = 0.95 * self._capacity + 0.05 * bps
        norm = max(self._capacity, 1.0)
        self._capacity_var = min(max(0.95 * self._capacity_var + 0.05 * (self._capacity - bps)
                                     ** 2 / norm, 0.4), 2.5)

    def _near_capacity(self) -> bool:
        """Whether we know roughly where the link saturates (and are not past it: beyond,
        the link has changed and the increase is multiplicative again)."""
        if self._capacity is None:
            return False
        if self.bps > self._capacity + 3 * math.sqrt(self._capacity_var * self._capacity):
            self._capacity = None
            return False
        return True
