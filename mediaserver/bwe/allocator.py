"""Sharing one receiver's downlink among the streams it receives.

Audio first (it is what keeps a consultation going), then the base layer of every video in
order of priority (the person speaking or on the big tile first), then higher layers, one
step at a time, in the same order. A video is paused only when even its base layer does not
fit, and all video is paused below the floor. Going up a layer needs 10% headroom so a
receiver near a boundary does not flap; going down is immediate.

A stream's `layers` are cumulative bitrates (layer i with everything below it): three for a
VP8 L1T3 publisher (7.5, 15, 30 fps), one for a stream without temporal layers. Rates of 0
mean "not measured yet": such a stream is given everything (nothing to decide on).

Pure arithmetic, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

UP_HEADROOM = 0.9
RESUME_FACTOR = 1.2  # a paused receiver's video comes back above floor x 1.2


@dataclass(slots=True)
class StreamDemand:
    key: object
    kind: str  # "audio" or "video"
    layers: Sequence[float]  # cumulative bits per second by layer
    priority: int = 0  # higher: served first
    current: int = -1  # layer forwarded now (-1: paused / not yet)


@dataclass(slots=True)
class Allocation:
    layers: dict[object, int] = field(default_factory=dict)  # key -> layer, -1 paused
    used_bps: float = 0.0
    wanted_bps: float = 0.0  # everything at its top layer
    budgets: dict[object, float] = field(default_factory=dict)  # what each video could use
    next_step_bps: float = 0.0  # more needed for one more layer (0: nothing left to add)

    @property
    def deficient(self) -> bool:
        """Some stream gets less than its top layer: worth probing for more."""
        return self.wanted_bps > self.used_bps + 1.0

    def video_paused(self, demands: Sequence[StreamDemand]) -> bool:
        videos = [d.key for d in demands if d.kind == "video"]
        return bool(videos) and all(self.layers.get(k, -1) < 0 for k in videos)


def allocate(available_bps: float, demands: Sequence[StreamDemand], *, floor_bps: float,
             was_paused: bool = False) -> Allocation:
    out = Allocation()
    left = available_bps
    for d in demands:
        if d.kind != "video":
            out.layers[d.key] = len(d.layers) - 1
            rate = d.layers[-1] if d.layers else 0.0
            left -= rate
            out.used_bps += rate
            out.wanted_bps += rate
    videos = sorted((d for d in demands if d.kind == "video"), key=lambda d: -d.priority)
    for d in videos:
        out.wanted_bps += d.layers[-1] if d.layers else 0.0
        out.layers[d.key] = -1
    floor = floor_bps * (RESUME_FACTOR if was_paused else 1.0)
    if not videos:
        return out
    if left < floor:
        base = min(_rate(d, 0) for d in videos)
        out.next_step_bps = max(floor, base / UP_HEADROOM) - max(left, 0.0)
        return out
    # Base layers, by priority, while they fit.
    for d in videos:
        base = _rate(d, 0)
        need = base if d.current >= 0 else base / UP_HEADROOM  # resuming needs headroom
        if need <= left:
            out.layers[d.key] = 0
            left -= base
            out.used_bps += base
    # Then one layer at a time, by priority, while the next one fits.
    improved = True
    while improved:
        improved = False
        for d in videos:
            layer = out.layers[d.key]
            if layer < 0 or layer + 1 >= len(d.layers):
                continue
            step = _rate(d, layer + 1) - _rate(d, layer)
            headroom = 1.0 if layer + 1 <= d.current else UP_HEADROOM
            if step <= left * headroom:
                out.layers[d.key] = layer + 1
                left -= step
                out.used_bps += step
                improved = True
    steps = []
    for d in videos:  # what each video could use if it had the rest to itself
        layer = out.layers[d.key]
        taken = _rate(d, layer) if layer >= 0 else 0.0
        out.budgets[d.key] = taken + max(left, 0.0)
        if layer + 1 < len(d.layers):
            steps.append(_rate(d, layer + 1) - taken)
    if steps:
        out.next_step_bps = max(min(steps) - max(left, 0.0), 0.0) / UP_HEADROOM
        if left < floor:  # below the floor nothing resumes before the floor is reached
            out.next_step_bps = max(out.next_step_bps, floor - left)
    return out


def _rate(d: StreamDemand, layer: int) -> float:
    if not d.layers or d.layers[-1] <= 0:
        return 0.0  # not measured yet: free, so it gets every layer
    return d.layers[layer]
