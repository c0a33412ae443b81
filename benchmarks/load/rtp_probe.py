"""Counting and timing packets at an aiortc receiver, without decoding them.

The only module of the load tool that reaches into aiortc internals (pinned to 1.16.0):

* ``RTCRtpReceiver._handle_rtp_packet`` is looked up on the instance for every packet
  (``RTCDtlsTransport._handle_rtp_data``), so wrapping it there sees each parsed packet
  first; the original then runs as usual, so NACKs, receiver reports and REMB still go
  out as from a real client.
* ``_RTCRtpReceiver__decoder_queue`` is where aiortc puts each frame its jitter buffer
  assembled, for a decoder thread. A receiver that must not decode gets a ``FrameSink``
  there instead: frames are dropped and the idle decoder thread still ends on ``stop()``.
  A sampled receiver keeps aiortc's decoder and its decoded frames are counted: proof
  that the replayed streams are valid video.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError

from .media_source import FINGERPRINT_BYTES
from .receiver_stats import SendLogLike, StreamStats, fold_streams
from .stats import LogHistogram


class FrameSink:
    """Stands in for aiortc's decoder queue: assembled frames are dropped, not decoded."""

    def __init__(self, inner: queue.Queue[Any]) -> None:
        self.inner = inner
        self.frames = 0

    def put(self, item: Any) -> None:
        if item is None:  # stop(): let the decoder thread end
            self.inner.put(None)
        else:
            self.frames += 1

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get(*args, **kwargs)


def vp8_frame_start(payload: bytes, start: int = 0) -> tuple[int, bool] | None:
    """(offset of the coded data, keyframe) when the VP8 payload at ``payload[start:]``
    starts a frame. ``start`` lets the raw receiver read a whole RTP packet in place
    (no payload copy); the returned offset is then into the packet."""
    n = len(payload)
    if n < start + 2:
        return None
    b0 = payload[start]
    if not b0 & 0x10 or b0 & 0x07:
        return None  # not the start of partition 0
    i = start + 1
    if b0 & 0x80:
        b1 = payload[start + 1]
        i += 1
        if b1 & 0x80:
            if i >= n:
                return None
            i += 2 if payload[i] & 0x80 else 1
        if b1 & 0x40:
            i += 1
        if b1 & 0x30:
            i += 1
    if i >= n:
        return None
    return i, not payload[i] & 0x01


class ReceiverProbe:
    def __init__(self, receiver: RTCRtpReceiver, kind: str,
                 logs: Callable[[], Sequence[SendLogLike]], latency: LogHistogram, *,
                 decode: bool = False) -> None:
        self.kind = kind
        self.logs = logs
        self.latency = latency
        self.streams: dict[int, StreamStats] = {}
        self.first_at: float | None = None
        self.decoded_frames = 0
        self.decoded_size: tuple[int, int] | None = None
        self._receiver = receiver
        self._codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        self._original = receiver._handle_rtp_packet
        receiver._handle_rtp_packet = self._handle  # type: ignore[method-assign]
        self._drain: asyncio.Future[None] | None = None
        self.decode = decode
        if not decode:
            inner = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
            receiver._RTCRtpReceiver__decoder_queue = FrameSink(inner)  # type: ignore[attr-defined]
        self._last: StreamStats | None = None

    def start_decoding(self) -> None:
        """Count what aiortc decodes, once the remote track exists (setRemoteDescription
        creates it)."""
        if self.decode and self._drain is None and self._receiver.track is not None:
            self._drain = asyncio.ensure_future(self._count_decoded(self._receiver.track))

    @property
    def keyframe_at(self) -> float | None:
        times = [s.keyframe_at for s in self.streams.values() if s.keyframe_at is not None]
        return min(times) if times else None

    async def _handle(self, packet: Any, arrival_time_ms: int) -> None:
        now = time.monotonic()
        codec = self._codecs.get(packet.payload_type)
        if codec is not None:
            if is_rtx(codec):
                stream = self.streams.get(self._rtx_ssrc.get(packet.ssrc, -1)) or self._last
                if stream is not None and len(packet.payload) >= 2:
                    stream.on_rtx(int.from_bytes(packet.payload[:2], "big"))
            else:
                self._count(now, packet, codec.clockRate)
        await self._original(packet, arrival_time_ms)

    def _count(self, now: float, packet: Any, clock_rate: int) -> None:
        stream = self.streams.get(packet.ssrc)
        if stream is None:
            stream = StreamStats(self.kind, clock_rate, self.logs, self.latency)
            self.streams[packet.ssrc] = stream
        self._last = stream
        if self.first_at is None:
            self.first_at = now
        payload = packet.payload
        key: bytes | None
        keyframe = False
        if self.kind == "video":
            start = vp8_frame_start(payload)
            if start is None:
                key = None
            else:
                offset, keyframe = start
                key = bytes(payload[offset:offset + FINGERPRINT_BYTES])
        else:
            key = bytes(payload[:FINGERPRINT_BYTES])
        stream.on_packet(now, packet.sequence_number, packet.timestamp, bool(packet.marker),
                         len(payload), key, keyframe)

    async def _count_decoded(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                self.decoded_frames += 1
                if self.kind == "video":
                    self.decoded_size = (frame.width, frame.height)

    def end(self, now: float) -> None:
        for stream in self.streams.values():
            stream.end(now)
        if self._drain is not None:
            self._drain.cancel()

    def summary(self) -> dict[str, Any]:
        """All streams of this receiver folded into one (a rebind starts a new SSRC only
        when the server says so; usually there is one)."""
        return fold_streams(self.kind, list(self.streams.values()), self.decoded_frames)
