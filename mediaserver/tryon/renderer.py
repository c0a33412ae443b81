"""The frame-level try-on API for one video stream.

One ``TryOnRenderer`` per customer stream. The media path hands it every decoded BGR
frame and sends on what it returns. Detection is split out because it is the one slow
step (a Haar pass costs 4-18 ms): it is pure CPU and can run in a thread executor while
frames keep flowing with the last smoothed placement.

Synchronous use (tests, the benchmark)::

    out = renderer.render(frame, now)

From an event loop, never blocking a frame on detection::

    out = await renderer.render_async(frame, now)        # default executor

or wired by hand::

    if renderer.needs_detection(now):
        hint = renderer.begin_detection(now)
        future = loop.run_in_executor(pool, renderer.detect, frame, hint)
        future.add_done_callback(lambda f: renderer.update(f.result(), now))
    out = renderer.apply(frame, renderer.placement(now))

Everything except ``detect`` must be called from the stream's own (event-loop) thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

import numpy as np

from .catalogue import Catalogue
from .compositing import composite
from .garment import Garment
from .placement import FaceDetector, Placement
from .tracking import PlacementTracker, TrackerConfig

__all__ = ["TryOnRenderer"]

log = logging.getLogger(__name__)


class TryOnRenderer:
    """Draws the selected garment on the person in one stream's frames.

    ``detector`` may be shared by all renderers (it is stateless and thread-safe); it is
    created on demand otherwise, which loads the Haar cascades (tens of ms).
    """

    def __init__(self, catalogue: Catalogue, *, detector: FaceDetector | None = None,
                 tracker: TrackerConfig | None = None) -> None:
        self.catalogue = catalogue
        self.detector = detector if detector is not None else FaceDetector()
        self.tracker = PlacementTracker(tracker if tracker is not None else TrackerConfig())
        self._garment: Garment | None = None

    @property
    def garment(self) -> Garment | None:
        return self._garment

    def set_garment(self, garment_id: str | None) -> None:
        """Select the garment to draw, or None to switch try-on off.

        Raises ``UnknownGarmentError`` for an id not in the catalogue. Switching between
        garments keeps tracking the person (placement does not depend on the garment);
        switching off forgets them, so no stale placement shows when switched back on.
        """
        if garment_id is None:
            self._garment = None
            self.tracker.reset()
            return
        self._garment = self.catalogue.get(garment_id)

    def needs_detection(self, now: float) -> bool:
        """Whether to run ``detect`` on this frame: never while try-on is off."""
        return self._garment is not None and self.tracker.needs_detection(now)

    def begin_detection(self, now: float) -> Placement | None:
        """Mark a detection as running (so no second one starts); returns its hint."""
        return self.tracker.begin_detection(now)

    def detect(self, frame_bgr: np.ndarray, hint: Placement | None = None) -> Placement | None:
        """Find the person in ``frame_bgr``. Pure CPU and thread-safe: touches no state of
        this renderer, so it may run in an executor. The frame must not be modified
        while it runs (frames from the decoder are fresh arrays, and ``render`` copies)."""
        return self.detector.detect(frame_bgr, hint)

    def update(self, placement: Placement | None, now: float) -> None:
        """Feed a ``detect`` result (None: nobody found) into smoothing and hold."""
        self.tracker.update(placement, now)

    def placement(self, now: float) -> Placement | None:
        """The smoothed placement for a frame at ``now``; None when there is nobody."""
        if self._garment is None:
            return None
        return self.tracker.current(now)

    def apply(self, frame_bgr: np.ndarray, placement: Placement | None) -> np.ndarray:
        """The frame with the current garment at ``placement``: a new array, or
        ``frame_bgr`` itself, untouched, when off or there is no placement."""
        garment = self._garment
        if garment is None or placement is None:
            return frame_bgr
        return composite(frame_bgr, garment, placement)

    def render(self, frame_bgr: np.ndarray, now: float) -> np.ndarray:
        """Detect if due (blocking), then draw: the whole path for one frame."""
        if self.needs_detection(now):
            hint = self.begin_detection(now)
            self.update(self.detect(frame_bgr, hint), now)
        return self.apply(frame_bgr, self.placement(now))

    async def render_async(self, frame_bgr: np.ndarray, now: float,
                           executor: concurrent.futures.Executor | None = None) -> np.ndarray:
        """Like ``render``, but detection runs in ``executor`` in the background.

        This frame is drawn with the placement known so far; the detection result lands a
        frame or two later through the smoothing, which hides the delay. A detection that
        raises is logged and counted as a miss, so the stream never stops on it.
        """
        if self.needs_detection(now):
            hint = self.begin_detection(now)
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(executor, self.detector.detect, frame_bgr, hint)
            future.add_done_callback(lambda f: self._detected(f, now))
        return self.apply(frame_bgr, self.placement(now))

    def _detected(self, future: asyncio.Future[Placement | None], started: float) -> None:
        if future.cancelled():
            self.update(None, started)
            return
        error = future.exception()
        if error is not None:
            log.warning("try-on detection failed", exc_info=error)
            self.update(None, started)
            return
        if self._garment is not None:  # switched off meanwhile: keep the tracker empty
            self.update(future.result(), started)
