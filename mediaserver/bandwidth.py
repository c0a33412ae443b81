"""Bandwidth decisions of the SFU: plain arithmetic, no I/O, so it tests fast.

Per receiving participant we keep one estimate of what its downlink carries, from the two
signals a receiver gives us: REMB (its own delay-based estimate) and the loss in its receiver
reports. Each publisher is then capped (with REMB towards it) at what its most constrained
receiver can take, and never above its session's share of a store's configured capacity.
Below a floor a receiver gets audio only, with hysteresis so it does not flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_START_BPS = 1_500_000
MIN_BPS = 50_000
MAX_BPS = 10_000_000


class BandwidthEstimate:
    """Loss-based estimate (like GCC's loss controller), bounded by the receiver's REMB.

    Loss above 10% cuts the estimate in proportion; below 2% it grows by 8% per report;
    in between it holds. REMB, when the receiver sends it, is an upper bound.
    """

    __slots__ = ("cut_last_report", "loss_bps", "remb_bps")

    def __init__(self, start_bps: float = DEFAULT_START_BPS) -> None:
        self.loss_bps = float(start_bps)
        self.cut_last_report = False
        self.remb_bps: float | None = None

    def on_remb(self, bps: float) -> None:
        self.remb_bps = max(float(bps), 0.0)

    def on_loss(self, fraction_lost: float, delivered_bps: float | None = None) -> None:
        """One receiver-report interval. ``delivered_bps``: what we sent it that arrived.

        Under heavy loss the link carries about what arrived, so the estimate heads there
        instead of shrinking by a few percent a second while the loss goes on. At most
        halving per report: a report describes the previous second, and right after we cut
        what we send, "delivered" (this second's rate times last second's loss) undershoots.
        """
        if fraction_lost > 0.10:
            if self.cut_last_report:
                # The report right after a cut still describes (mostly) the traffic from
                # before it: cutting again on it would count the same loss twice.
                self.cut_last_report = False
                return
            self.cut_last_report = True
            self.loss_bps *= 1.0 - 0.5 * fraction_lost
            if delivered_bps is not None and delivered_bps > 0:
                self.loss_bps = min(self.loss_bps, max(delivered_bps, self.loss_bps / 2))
            self.loss_bps = max(self.loss_bps, MIN_BPS)
            return
        self.cut_last_report = False
        if fraction_lost < 0.02:
            self.loss_bps = min(self.loss_bps * 1.08, MAX_BPS)

    @property
    def bps(self) -> float:
        if self.remb_bps is None:
            return self.loss_bps
        return min(self.loss_bps, self.remb_bps)


@dataclass(frozen=True, slots=True)
class StoreBudget:
    uplink_bps: float | None = None  # what the store's devices can send
    downlink_bps: float | None = None  # what the store's devices can receive


def session_share(budget_bps: float | None, active_sessions: int) -> float | None:
    """A store's capacity is shared equally among its active media sessions."""
    if budget_bps is None:
        return None
    return budget_bps / max(1, active_sessions)


def publisher_cap(receiver_bps: Iterable[float], *, audio_bps: float,
                  share_bps: float | None = None) -> float | None:
    """The video bitrate a publisher should send: what its tightest receiver takes after
    audio, within the session's store share. None when nobody receives its video."""
    receivers = list(receiver_bps)
    if not receivers:
        return None
    cap = min(receivers) - audio_bps
    if share_bps is not None:
        cap = min(cap, share_bps - audio_bps)
    return max(cap, MIN_BPS)


def layered_publisher_cap(receiver_bps: Iterable[float], *, audio_bps: float,
                          base_layer_share: float, share_bps: float | None = None
                          ) -> float | None:
    """The video bitrate of a publisher sending temporal layers.

    Its best receiver sets the rate (the others get fewer layers instead of pulling
    everyone down), but never so high that the tightest receiver could not take even the
    base layer, which carries ``base_layer_share`` of the stream's bits.
    """
    receivers = list(receiver_bps)
    if not receivers:
        return None
    cap = max(receivers) - audio_bps
    if base_layer_share > 0:
        cap = min(cap, (min(receivers) - audio_bps) / base_layer_share)
    if share_bps is not None:
        cap = min(cap, share_bps - audio_bps)
    return max(cap, MIN_BPS)


def pick_temporal_layer(cumulative_bps: Sequence[float], available_bps: float,
                        current: int, *, headroom: float = 0.9) -> int:
    """The highest temporal layer whose bitrate (with the layers below it) a receiver takes.

    Going up needs 10% headroom, so a receiver near a boundary does not flap between
    layers every second. Before anything is measured, every layer is forwarded.
    """
    top = len(cumulative_bps) - 1
    if top < 0 or cumulative_bps[top] <= 0:
        return max(top, 0)
    for layer in range(top, 0, -1):
        limit = available_bps if layer <= current else available_bps * headroom
        if cumulative_bps[layer] <= limit:
            return layer
    return 0


# A REMB this far above what we send describes our traffic, not the link: Chromium's
# receive-side estimate stays within about 1.5x the incoming rate + 10 kbps when the sender
# under-uses the link (a static scene, a low-complexity camera, or audio only).
APP_LIMITED_RATIO = 1.3
APP_LIMITED_MAX_LOSS = 0.02
CONGESTED_RATIO = 0.9
PROBE_FIRST_S = 5.0  # paused for an app-limited estimate: try video again after this
PROBE_MAX_S = 60.0
PROBE_FAILED_WITHIN_S = 10.0  # paused again this soon after a probe: back off
LOW_TICKS_TO_PAUSE = 2


def app_limited(remb_bps: float | None, sent_bps: float, fraction_lost: float) -> bool:
    """Whether a receiver's low estimate says nothing about its link: its REMB sits well
    above what we send it and nothing is lost. Such a receiver is not constrained."""
    return (remb_bps is not None and remb_bps >= APP_LIMITED_RATIO * sent_bps
            and fraction_lost < APP_LIMITED_MAX_LOSS)


def congested(remb_bps: float | None, sent_bps: float, fraction_lost: float) -> bool:
    """Whether a receiver shows trouble with what it gets now: loss, or a REMB under it."""
    return fraction_lost >= APP_LIMITED_MAX_LOSS or (
        remb_bps is not None and remb_bps < CONGESTED_RATIO * sent_bps)


class VideoGate:
    """Audio-only fallback with hysteresis: pause below the floor, resume above 1.5x it.

    Only a low estimate that holds for LOW_TICKS_TO_PAUSE reports in a row pauses (a
    keyframe burst can dip one), and never one that is ``app_limited``. Once paused, a
    receiver gets only audio, so its REMB can no longer show that video would fit: after
    ``probe_after_s`` without congestion (loss, or a REMB under what it gets), video is
    tried again. A probe that ends in another pause within PROBE_FAILED_WITHIN_S doubles the
    wait (up to PROBE_MAX_S), so a really weak link is not flooded with keyframes.
    """

    __slots__ = ("floor_bps", "low_ticks", "paused", "paused_at", "probe_after_s",
                 "resumed_at")

    def __init__(self, floor_bps: float) -> None:
        self.floor_bps = floor_bps
        self.paused = False
        self.low_ticks = 0
        self.paused_at = 0.0
        self.resumed_at: float | None = None
        self.probe_after_s = PROBE_FIRST_S

    def update(self, available_bps: float, now: float = 0.0, *, app_limited: bool = False,
               congested: bool = False) -> bool | None:
        """One estimate (once a second). True: just paused; False: just resumed; None:
        unchanged."""
        if not self.paused:
            if available_bps >= self.floor_bps or app_limited:
                self.low_ticks = 0
                return None
            self.low_ticks += 1
            if self.low_ticks < LOW_TICKS_TO_PAUSE:
                return None
            self.paused = True
            self.low_ticks = 0
            self.paused_at = now
            probe_failed = self.resumed_at is not None and \
                now - self.resumed_at < PROBE_FAILED_WITHIN_S
            self.probe_after_s = min(2 * self.probe_after_s, PROBE_MAX_S) \
                if probe_failed else PROBE_FIRST_S
            return True
        if available_bps >= 1.5 * self.floor_bps or (
                not congested and now - self.paused_at >= self.probe_after_s):
            self.paused = False
            self.resumed_at = now
            return False
        return None


def active_sessions_by_store(session_stores: Mapping[str, str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for store in session_stores.values():
        if store is not None:
            counts[store] = counts.get(store, 0) + 1
    return counts
