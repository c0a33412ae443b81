"""What the SFU shares between all try-on streams: catalogue, detector, detection threads.

One per media backend. The Haar cascades and the detection pool are made once (loading
the cascades costs tens of ms, and one or two detection threads are all a small server
should spend on detection); each ``TryOnStream`` has only its codec worker of its own.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Collection
from typing import Any

import cv2

from .catalogue import Catalogue
from .placement import FaceDetector
from .stream import TryOnStream

__all__ = ["TryOnService"]


class TryOnService:
    """Creates try-on streams for the stores that offer try-on, and keeps their totals."""

    def __init__(self, catalogue: Catalogue, *, stores: Collection[str] = (),
                 detect_threads: int = 1, bitrate: int = 1_000_000) -> None:
        # OpenCV's own thread pool only adds CPU when many streams run at once (measured in
        # benchmarks/tryon.py): parallelism comes from the per-stream workers instead.
        cv2.setNumThreads(1)
        self.catalogue = catalogue
        self.stores = frozenset(stores)  # empty: every store
        self.detector = FaceDetector()
        self.bitrate = bitrate
        self._detect_threads = detect_threads
        self._detect_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.streams_started = 0
        self.retired: dict[str, int] = {"frames_decoded": 0, "frames_out": 0}

    def available_for(self, store_id: str | None) -> bool:
        return not self.stores or (store_id is not None and store_id in self.stores)

    def open_stream(self, participant_id: str, mime_type: str,
                    on_live: Any = lambda: None) -> TryOnStream:
        if self._detect_pool is None:  # threads only once someone actually tries on
            self._detect_pool = concurrent.futures.ThreadPoolExecutor(
                self._detect_threads, thread_name_prefix="tryon-detect")
        stream = TryOnStream(participant_id, mime_type, self.catalogue,
                             detector=self.detector, detect_pool=self._detect_pool,
                             on_live=on_live, bitrate=self.bitrate)
        self.streams_started += 1
        return stream

    def retire(self, stream: TryOnStream) -> None:
        stream.close()
        self.retired["frames_decoded"] += stream.frames_decoded
        self.retired["frames_out"] += stream.frames_out

    def close(self, *, wait: bool = False) -> None:
        if self._detect_pool is not None:
            self._detect_pool.shutdown(wait=wait, cancel_futures=True)
            self._detect_pool = None
