"""Placement over time: smoothing, holding through misses, and when to detect next.

Detection runs only every few frames (a Haar pass costs several frames' worth of the
CPU budget) and its box jumps by a few pixels between runs even on a still person, so the
drawn placement is an exponential moving average that is advanced on every rendered
frame: the garment glides toward each new detection instead of jumping every 5th frame.
The averaging weight comes from elapsed time, not a frame count, so it behaves the same
at 15 or 30 fps and when frames arrive unevenly.

A single missed detection (motion blur, a hand in front of the face) should not make the
garment flicker off, so the last placement is held for ``hold`` seconds; after that the
person is taken to have left and nothing is drawn.

All times are caller-supplied seconds on any monotonic clock (``time.monotonic()`` or
frame timestamps), which keeps the class deterministic under test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .placement import Placement

__all__ = ["PlacementTracker", "TrackerConfig"]

_SLACK = 1e-3


@dataclass(frozen=True)
class TrackerConfig:
    """Timing of detection and smoothing, in seconds.

    - ``detect_interval``: between detections while a person is tracked (5 frames at
      30 fps: the amortized Haar cost stays near 1 ms/frame with hint-limited search).
    - ``retry_interval``: after a miss while still holding, to re-acquire quickly.
    - ``search_interval``: while nobody is there; a whole-frame search costs ~18 ms, so an
      empty shop floor is checked three times a second, not every frame.
    - ``hold``: how long the last placement survives misses.
    - ``tau_*``: smoothing time constants; position follows faster than size and roll,
      which jitter more in a Haar box and look worse when they do.
    - ``snap_distance``: a jump of more than this many shoulder widths is a new person or a
      different face, so the placement jumps instead of sliding across the frame.
    - ``pending_timeout``: a detection started but never reported (an executor error)
      stops blocking new ones after this long.
    """

    detect_interval: float = 5 / 30
    retry_interval: float = 2 / 30
    search_interval: float = 10 / 30
    hold: float = 0.5
    tau_position: float = 0.12
    tau_scale: float = 0.25
    tau_angle: float = 0.25
    snap_distance: float = 0.75
    pending_timeout: float = 1.0


class PlacementTracker:
    """Turns sparse, noisy detections into a smooth placement for every frame.

    Not thread-safe: call it from the one thread that renders the stream.
    """

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget the person (used when try-on is switched off)."""
        self._target: Placement | None = None
        self._smoothed: Placement | None = None
        self._last_seen = -math.inf
        self._last_attempt = -math.inf
        self._smoothed_at = -math.inf
        self._missed = False
        self._pending_since: float | None = None

    @property
    def target(self) -> Placement | None:
        """The latest detected (unsmoothed) placement still within the hold period."""
        return self._target

    def needs_detection(self, now: float) -> bool:
        """Whether a detection is due at ``now`` (and none is already running)."""
        cfg = self.config
        if self._pending_since is not None:
            if now - self._pending_since < cfg.pending_timeout:
                return False
            self._pending_since = None
        if self._target is None:
            interval = cfg.search_interval
        elif self._missed:
            interval = cfg.retry_interval
        else:
            interval = cfg.detect_interval
        # The slack keeps "every 5th frame" exact when frame times are n/30 floats.
        return now - self._last_attempt >= interval - _SLACK

    def begin_detection(self, now: float) -> Placement | None:
        """Mark a detection as running; returns the hint to search near."""
        self._pending_since = now
        self._last_attempt = now
        return self._target

    def update(self, detected: Placement | None, now: float) -> None:
        """Record a detection result (None: no face found)."""
        self._pending_since = None
        self._last_attempt = max(self._last_attempt, now)
        if detected is None:
            self._missed = True
            return
        self._missed = False
        self._last_seen = now
        current = self._smoothed
        if current is None or self._is_jump(current, detected):
            self._smoothed = detected
            self._smoothed_at = now
        self._target = detected

    def current(self, now: float) -> Placement | None:
        """The smoothed placement to draw at ``now``, or None when nobody is there."""
        target, smoothed = self._target, self._smoothed
        if target is None or smoothed is None:
            return None
        if now - self._last_seen > self.config.hold:
            self._target = self._smoothed = None
            return None
        dt = max(0.0, now - self._smoothed_at)
        self._smoothed_at = max(self._smoothed_at, now)
        if dt > 0:
            self._smoothed = smoothed = self._blend(smoothed, target, dt)
        return smoothed

    def _is_jump(self, current: Placement, detected: Placement) -> bool:
        if current.frame_size != detected.frame_size:
            return True
        distance = math.hypot(detected.neck_x - current.neck_x, detected.neck_y - current.neck_y)
        return distance > self.config.snap_distance * current.shoulder_width

    def _blend(self, old: Placement, new: Placement, dt: float) -> Placement:
        cfg = self.config
        a_pos = 1.0 - math.exp(-dt / cfg.tau_position)
        a_scale = 1.0 - math.exp(-dt / cfg.tau_scale)
        a_angle = 1.0 - math.exp(-dt / cfg.tau_angle)
        return replace(
            new,
            neck_x=old.neck_x + a_pos * (new.neck_x - old.neck_x),
            neck_y=old.neck_y + a_pos * (new.neck_y - old.neck_y),
            shoulder_width=old.shoulder_width
            + a_scale * (new.shoulder_width - old.shoulder_width),
            angle=old.angle + a_angle * (new.angle - old.angle),
        )
