"""Everything the SFU decides about one receiver's downlink, from its feedback: the estimate
(estimator.py), which layers of which streams it gets (allocator.py), and when to probe for
more (prober.py). The router feeds it feedback and the streams' rates and applies what it
returns; it holds no I/O itself, so closed-loop tests drive it on a simulated link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .allocator import Allocation, StreamDemand, allocate
from .estimator import PacketResult, SendSideEstimator
from .prober import FIRST_BACKOFF_S, ProbeCluster, ProbeController, ProbeOutcome

START_BPS = 1_000_000.0
RECENT_S = 5.0  # congestion or a failed probe this recent: probe one layer at a time
CALM_S = 1.5
ALLOCATION_SHARE = 0.9


@dataclass(slots=True)
class Decision:
    allocation: Allocation
    probe: ProbeCluster | None  # started now
    outcome: ProbeOutcome | None  # a probe judged now
    paused_changed: bool | None  # True: video just paused; False: just resumed


class DownlinkController:
    __slots__ = ("allocation", "estimator", "floor_bps", "last_outcome", "prober",
                 "video_paused")

    def __init__(self, floor_bps: float, start_bps: float = START_BPS) -> None:
        self.estimator = SendSideEstimator(start_bps)
        self.prober = ProbeController()
        self.floor_bps = floor_bps
        self.video_paused = False
        self.allocation: Allocation | None = None
        self.last_outcome: ProbeOutcome | None = None

    def on_feedback(self, results: list[PacketResult], now: float) -> None:
        self.estimator.on_feedback(results, now)
        self.prober.on_results(results, self.estimator.last_overuse_s)

    def available_bps(self, cap_bps: float | None) -> float:
        """What the allocation may plan for: the estimate less a margin for what it does
        not plan (retransmissions, RTCP, keyframes above a layer's average), so the link's
        queue drains instead of sitting full."""
        estimate = self.estimator.bps * ALLOCATION_SHARE
        return estimate if cap_bps is None else min(estimate, cap_bps)

    def update(self, now: float, demands: Sequence[StreamDemand],
               cap_bps: float | None = None) -> Decision:
        """Re-decide (a few times a second): probe results, allocation, next probe."""
        outcome = self.prober.finish(now)
        if outcome is not None:
            self.last_outcome = outcome
            if outcome.success:
                self.estimator.on_probe_result(outcome.receive_bps, now)
            elif outcome.receive_bps >= 0.95 * outcome.cluster.estimate_bps:
                # Too much, but what we had before still got through: the cut the probe's
                # own queue caused is undone (the probe, not the link, overflowed it).
                self.estimator.on_probe_result(outcome.cluster.estimate_bps, now)
        if not self.estimator.congested(now, CALM_S):
            # Calm again (a link that came back): the backoff of probes that failed while
            # it was down says nothing now. A rate that failed lately still bounds them.
            self.prober.backoff_s = min(self.prober.backoff_s, FIRST_BACKOFF_S)
        allocation = allocate(self.available_bps(cap_bps), demands, floor_bps=self.floor_bps,
                              was_paused=self.video_paused)
        paused = allocation.video_paused(demands)
        changed = None if paused == self.video_paused else paused
        self.video_paused = paused
        self.allocation = allocation
        probe = None
        if allocation.deficient:
            estimator = self.estimator
            recent_failure = now - self.prober.failed_at < RECENT_S
            # What gets through now is a floor for the estimate a probe starts from (a
            # loss controller can undershoot it while a queue drains).
            base = max(estimator.bps, estimator.acked.bps or 0.0)
            probe = self.prober.want(
                now, base, allocation.wanted_bps * 1.1,
                congested=estimator.congested(now), step_bps=allocation.next_step_bps,
                recently_congested=recent_failure or estimator.congested(now, RECENT_S),
                cap_bps=cap_bps)
        return Decision(allocation, probe, outcome, changed)

    def padding_bps(self, now: float, media_bps: float) -> float:
        return self.prober.padding_bps(now, media_bps)

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.estimator.describe())
        out["probing"] = self.prober.cluster is not None
        if self.last_outcome is not None:
            o = self.last_outcome
            out["last_probe"] = {"target_bps": round(o.cluster.target_bps),
                                 "receive_bps": round(o.receive_bps), "success": o.success}
        return out
