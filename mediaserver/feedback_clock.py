"""When the SFU's 50 ms feedback work runs: on packet arrivals, not on a timer of its own.

That work (NACKs for what publishers lost, repeated keyframe requests, freeze sampling for
the call-quality report) must run about every 50 ms while media flows. A 20 Hz timer wakes
the whole server 20 extra times a second whatever it is doing, and on this kind of VM waking
an idle process costs tens of µs of CPU (`python -m benchmarks.wakeup_cost`), more than the
work itself. Media arrives far more often than that (one camera alone is about 30 bursts a
second, its microphone 50 packets), so the packet path compares one float per received
packet and runs the work when it is due; the backend's once-a-second timer covers quiet
times, when nobody is sending and there is nothing to NACK or freeze.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FeedbackClock"]


class FeedbackClock:
    """Runs `work(now)` at most once per `interval`, on the first packet after it is due."""

    __slots__ = ("_work", "due", "interval")

    def __init__(self, work: Callable[[float], None], interval: float = 0.05) -> None:
        self._work = work
        self.interval = interval
        self.due = 0.0  # monotonic time from which the next poll runs the work

    def run(self, now: float) -> None:
        """Run the work now: the packet path found it due (`now >= clock.due`, checked
        inline, one comparison and no call per packet), or the periodic timer fired."""
        self.due = now + self.interval
        self._work(now)
