"""One shopper's try-on video inside the SFU: the only stream the server decodes.

A ``TryOnStream`` taps the shopper's camera ``Producer`` (``Producer.tap``, set only while
try-on is on), rebuilds frames from its packets (``reassembly``), and in its own worker
thread decodes each frame, draws the garment (``TryOnRenderer``) and encodes the result.
The encoded packets are fed to a synthetic ``Producer`` of the same codec, on the event
loop, so the router can hand it to every receiver exactly like a forwarded stream: the
staff's consumer and the shopper's own mirror consumer are ordinary ``Consumer`` objects,
and switching between the raw and the try-on stream is an ordinary consumer rebind (same
outgoing SSRC, continuous sequence numbers and timestamps, starting at a keyframe).

Threads, and why:

- the event loop only splits packets into frames and sends the encoded packets (asyncio
  transports are not thread-safe, and that part is cheap);
- decode + blend + encode (~6-8 ms a frame) run in one worker thread per stream, which
  keeps the frames of a stream in order and never blocks the loop, so forwarding the
  other streams never waits for try-on;
- face detection (4-18 ms, every few frames) runs in a separate shared pool, so a frame
  never waits for it: frames are drawn with the last smoothed placement meanwhile.

When the worker falls behind (a loaded machine), frames are still decoded (later frames
reference them) but not drawn nor encoded, so latency stays bounded instead of growing.
Output timestamps are the camera's RTP timestamps, so the shopper's sender reports map
onto the try-on stream too (lip sync with the forwarded audio).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiortc.codecs.h264 import H264Decoder, H264Encoder, h264_depayload
from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from ..producer import Producer
from ..rtp_header import TimestampUnwrapper, build_packet
from .catalogue import Catalogue, UnknownGarmentError
from .encoding import FastVp8Encoder
from .frames import bgr_from_video_frame, video_frame_from_bgr
from .placement import FaceDetector, Placement
from .reassembly import EncodedFrame, FrameAssembler
from .renderer import TryOnRenderer

__all__ = ["CODECS", "TryOnStream"]

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000
_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
OUTPUT_PAYLOAD_TYPE = 96  # placeholder: every consumer writes its receiver's own type
MAX_BACKLOG = 3  # frames waiting for the worker before new ones are decoded only
DEFAULT_BITRATE = 1_000_000  # aiortc's encoders clamp to 0.25-1.5 Mbps

# mime type -> (decoder factory, encoder factory, depayloader)
CODECS: dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[bytes], bytes]]] = {
    "video/vp8": (Vp8Decoder, FastVp8Encoder, vp8_depayload),
    "video/h264": (H264Decoder, H264Encoder, h264_depayload),
}

_DECODE_FAILED = object()


class TryOnStream:
    """Decode, composite and re-encode one participant's camera; see the module doc."""

    def __init__(self, participant_id: str, mime_type: str, catalogue: Catalogue, *,
                 detector: FaceDetector, detect_pool: concurrent.futures.Executor,
                 on_live: Callable[[], None] = lambda: None,
                 bitrate: int = DEFAULT_BITRATE) -> None:
        mime = mime_type.lower()
        if mime not in CODECS:
            raise ValueError(f"try-on cannot decode {mime_type}")
        self.participant_id = participant_id
        self.mime_type = mime
        self._new_decoder, new_encoder, self._depayload = CODECS[mime]
        self._encoder = new_encoder()
        self._encoder.target_bitrate = bitrate
        self.max_bitrate = bitrate
        self._decoder: Any = None
        self._decoder_generation = -1
        self._pts = TimestampUnwrapper()  # encoders want increasing pts across RTP wraps
        self._generation = 0
        self.renderer = TryOnRenderer(catalogue, detector=detector)
        self._detect_pool = detect_pool
        self._detection: tuple[concurrent.futures.Future[Placement | None], float] | None = None
        self._garment_id: str | None = None
        self._on_live = on_live
        self.on_output: Callable[[], None] | None = None  # after each frame (benchmarks)
        self._loop = asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"tryon-{participant_id}")
        self.assembler = FrameAssembler()
        # The try-on stream as the router sees it: a producer like any publisher's.
        self.producer = Producer(participant_id, "video", random.randrange(1, 1 << 32), mime,
                                 OUTPUT_PAYLOAD_TYPE, VIDEO_CLOCK, None, self._keyframe_wanted)
        self.source: Producer | None = None
        self._seq = random.randrange(1 << 16)
        self._queued = 0
        self._keyframes_wanted = 1
        self._keyframes_sent = 0
        self.live = False  # an output frame went out since the last (re)start
        self.closed = False
        self.frames_in = 0
        self.frames_decoded = 0
        self.frames_out = 0
        self.frames_skipped = 0
        self.decode_errors = 0
        self.detections = 0
        self.worker_cpu_s = 0.0  # CPU of decode + blend + encode (its worker thread)
        self.detect_cpu_s = 0.0  # CPU of this stream's detections (the shared pool)

    # Control, on the event loop ---------------------------------------------------------
    @property
    def garment_id(self) -> str | None:
        return self._garment_id

    def set_garment(self, garment_id: str) -> None:
        """Switch garments live; raises ``UnknownGarmentError`` for an id not in the
        catalogue. The worker picks the change up at its next frame."""
        self.renderer.catalogue.get(garment_id)
        self._garment_id = garment_id

    def follow(self, source: Producer | None, now: float) -> None:
        """Take frames from ``source`` (the participant's current camera producer; a new
        one after they rejoin), or from nothing."""
        if source is self.source:
            return
        if self.source is not None and self.source.tap == self._on_packet:
            self.source.tap = None
        self.source = source
        self.assembler.reset()
        self._generation += 1  # the worker opens a fresh decoder for the new stream
        if source is not None:
            source.tap = self._on_packet
            source.want_keyframe(now)

    def set_bitrate(self, bps: float) -> None:
        """Follow the receivers' bandwidth, up to the configured bitrate. Changes under 25%
        are ignored: the encoder restarts (with a keyframe) on every change it applies."""
        target = int(max(250_000, min(bps, self.max_bitrate)))
        current = self._encoder.target_bitrate
        if abs(target - current) > 0.25 * current:
            self._encoder.target_bitrate = target  # read by the worker at its next frame

    def _keyframe_wanted(self, _producer: Producer) -> None:
        """A receiver of the try-on stream needs a keyframe (joined, switched, PLI)."""
        self._keyframes_wanted += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.follow(None, time.monotonic())
        now = time.monotonic()
        for consumer in list(self.producer.consumers):
            consumer.bind(None, now)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # Packets in, on the event loop (called by Producer.receive) -------------------------
    def _on_packet(self, data: bytes, marker: int, seq_ext: int, timestamp: int,
                   offset: int, keyframe: bool, now: float) -> None:
        try:
            frames = self.assembler.push(seq_ext, marker, timestamp, data[offset:],
                                         keyframe, now)
            if self.assembler.need_keyframe and self.source is not None:
                self.source.want_keyframe(now)  # throttled to one per 500 ms
            if frames:
                for frame in frames:
                    self._submit(frame)
        except Exception:  # never let try-on break the publisher's own packet path
            log.exception("try-on %s: dropping a packet", self.participant_id)

    def _submit(self, frame: EncodedFrame) -> None:
        draw = self._queued < MAX_BACKLOG
        self._queued += 1
        self.frames_in += 1
        future = self._pool.submit(self._process, frame, draw, self._generation)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        try:  # worker thread: hand the result to the loop
            self._loop.call_soon_threadsafe(self._deliver, future)
        except RuntimeError:
            pass  # the loop is closed: the server is stopping

    # Packets out, on the event loop ------------------------------------------------------
    def _deliver(self, future: concurrent.futures.Future[Any]) -> None:
        self._queued -= 1
        if self.closed or future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.warning("try-on %s: frame failed", self.participant_id, exc_info=error)
            return
        result = future.result()
        if result is None:
            return
        if result is _DECODE_FAILED:
            self.assembler.reset()
            if self.source is not None:
                self.source.want_keyframe(time.monotonic())
            return
        payloads, timestamp = result
        now = time.monotonic()
        last = len(payloads) - 1
        producer = self.producer
        for i, payload in enumerate(payloads):
            self._seq = seq = (self._seq + 1) & 0xFFFF
            marker = int(i == last)
            producer.receive(build_packet(OUTPUT_PAYLOAD_TYPE, marker, seq, timestamp,
                                          producer.ssrc, payload),
                             marker, seq, timestamp, 12, now)
        self.frames_out += 1
        if self.on_output is not None:
            self.on_output()
        if not self.live:
            self.live = True
            self._on_live()  # the router moves receivers over to this stream

    # The worker thread -------------------------------------------------------------------
    def _process(self, frame: EncodedFrame, draw: bool,
                 generation: int) -> tuple[list[bytes], int] | object | None:
        """Decode one frame and, if ``draw``, composite and encode it."""
        started = time.thread_time()
        try:
            return self._decode_draw_encode(frame, draw, generation)
        finally:
            self.worker_cpu_s += time.thread_time() - started

    def _decode_draw_encode(self, frame: EncodedFrame, draw: bool,
                            generation: int) -> tuple[list[bytes], int] | object | None:
        if generation != self._decoder_generation:
            self._decoder = self._new_decoder()
            self._decoder_generation = generation
        try:
            data = b"".join([self._depayload(p) for p in frame.payloads])
            decoded = self._decoder.decode(JitterFrame(data=data, timestamp=frame.timestamp))
        except Exception:
            self.decode_errors += 1
            self._decoder = self._new_decoder()
            return _DECODE_FAILED
        self.frames_decoded += len(decoded)
        if not decoded:
            return None
        if not draw:
            self.frames_skipped += 1
            return None
        image = bgr_from_video_frame(decoded[-1])
        now = time.monotonic()
        renderer = self.renderer
        self._sync_garment()
        self._collect_detection()
        if self._detection is None and renderer.needs_detection(now):
            hint = renderer.begin_detection(now)
            self._detection = (self._detect_pool.submit(self._detect, image, hint), now)
        out = renderer.apply(image, renderer.placement(now))
        video = video_frame_from_bgr(out)
        video.pts, video.time_base = self._pts.unwrap(frame.timestamp), _TIME_BASE
        wanted = self._keyframes_wanted
        force = wanted != self._keyframes_sent
        self._keyframes_sent = wanted
        payloads, _ = self._encoder.encode(video, force_keyframe=force)
        return payloads, frame.timestamp

    def _detect(self, image: np.ndarray, hint: Placement | None) -> Placement | None:
        """In the detection pool: the renderer's pure ``detect``, with its CPU counted."""
        started = time.thread_time()
        try:
            return self.renderer.detect(image, hint)
        finally:
            self.detect_cpu_s += time.thread_time() - started

    def _sync_garment(self) -> None:
        wanted = self._garment_id
        current = self.renderer.garment
        if wanted is not None and (current is None or current.id != wanted):
            try:
                self.renderer.set_garment(wanted)
            except UnknownGarmentError:  # removed from the catalogue since: keep the last
                self._garment_id = current.id if current is not None else None

    def _collect_detection(self) -> None:
        if self._detection is None or not self._detection[0].done():
            return
        future, started = self._detection
        self._detection = None
        try:
            placement = future.result()
        except Exception:
            log.warning("try-on %s: detection failed", self.participant_id, exc_info=True)
            placement = None
        self.detections += 1
        self.renderer.update(placement, started)

    def describe(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "garment_id": self._garment_id,
                "live": self.live, "frames_in": self.frames_in,
                "frames_decoded": self.frames_decoded, "frames_out": self.frames_out,
                "frames_skipped": self.frames_skipped, "decode_errors": self.decode_errors,
                "detections": self.detections,
                "cpu_ms_per_frame": round((self.worker_cpu_s + self.detect_cpu_s) * 1000
                                          / max(1, self.frames_in), 2)}
