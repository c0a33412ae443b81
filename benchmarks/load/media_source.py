"""Pre-encoded media replayed in real time: the generator spends no CPU on encoding.

The loop is the fan-out benchmark's (benchmarks/fanout_media.py): 10 s of VP8 640x480 at
30 fps and ~1.5 Mbps plus Opus 20 ms frames, encoded once and cached under
``benchmarks/.cache/``. Its VP8 RTP payloads are depayloaded back into whole frames once per
process, and the tracks below hand those frames to aiortc as ``av.Packet`` objects.

aiortc 1.16 ``RTCRtpSender._next_encoded_frame`` (rtcrtpsender.py, line ~311) encodes only
``av.Frame`` objects; anything else goes to ``encoder.pack(packet)``, which for VP8 only
packetizes (``Vp8Encoder.pack``: payload descriptor + split, RTP timestamp from
``packet.pts``/``packet.time_base``) and for Opus only converts the timestamp. That is how
``MediaPlayer(decode=False)`` works too. The sender ignores keyframe requests for packets,
so ``watch_keyframe_requests`` wraps the sender's RTCP handler: a PLI/FIR restarts the
video loop at frame 0, its only keyframe, with the presentation timestamps running on.

Each track records when it handed every frame over (``SendLog``): the receivers of the same
process use it to measure one-way latency (see receiver_stats.py).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

from benchmarks.fanout_media import AUDIO_CLOCK, CACHE_DIR, FPS, VIDEO_CLOCK, load_media

RTCP_PSFB_FIR = 4
FINGERPRINT_BYTES = 24
AUDIO_FRAME_S = 0.02
SEND_LOG_FRAMES = 4096  # ~2 min of video frames, ~80 s of audio: far beyond any latency


@dataclass(frozen=True)
class MediaLoop:
    video: list[bytes]  # whole VP8 frames; frame 0 is the only keyframe
    audio: list[bytes]  # Opus frames, 20 ms each
    video_bps: float

    @property
    def video_packets_per_s(self) -> float:
        """RTP packets per second the video loop makes (aiortc packetizes at 1300 bytes)."""
        return sum(-(-len(f) // 1300) for f in self.video) / (len(self.video) / FPS)


_loop: MediaLoop | None = None


def load_loop(cache_dir: Path = CACHE_DIR) -> MediaLoop:
    """The replay loop of this process (encoded once per machine, depayloaded once here)."""
    global _loop
    if _loop is None:
        media = load_media(cache_dir)
        frames = [b"".join(vp8_depayload(p) for p in payloads) for payloads in media.video]
        _loop = MediaLoop(frames, list(media.audio), media.video_bps)
    return _loop


def fingerprint(frame_data: bytes | memoryview) -> bytes:
    """What identifies a frame at the receiver: the first bytes of its coded data."""
    return bytes(frame_data[:FINGERPRINT_BYTES])


class SendLog:
    """When each frame of one track was handed to aiortc, by presentation timestamp, and the
    latest timestamp of each distinct frame (by fingerprint), for the receiver to align."""

    __slots__ = ("by_fingerprint", "frames", "kind", "sent")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sent: OrderedDict[int, float] = OrderedDict()  # pts & 0xFFFFFFFF -> monotonic
        self.by_fingerprint: dict[bytes, int] = {}
        self.frames = 0

    def record(self, pts: int, key: bytes, now: float) -> None:
        pts &= 0xFFFFFFFF
        self.sent[pts] = now
        if len(self.sent) > SEND_LOG_FRAMES:
            self.sent.popitem(last=False)
        self.by_fingerprint[key] = pts
        self.frames += 1


class ReplayTrack(MediaStreamTrack):
    """Hands pre-encoded frames to aiortc at their real-time pace, as ``av.Packet``s."""

    def __init__(self, kind: str, frames: list[bytes], *, clock_rate: int,
                 frame_s: float) -> None:
        super().__init__()
        self.kind = kind
        self.frames = frames
        self.keys = [fingerprint(f) for f in frames]
        self.clock_rate = clock_rate
        self.frame_s = frame_s
        self.ticks = round(clock_rate * frame_s)
        self.time_base = fractions.Fraction(1, clock_rate)
        self.log = SendLog(kind)
        self.keyframe_requests = 0
        self.late_s = 0.0  # the worst lag behind schedule: a saturated generator shows here
        self._start: float | None = None
        self._n = 0
        self._pos = 0
        self._restart = False

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._restart = True

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            from aiortc.mediastreams import MediaStreamError

            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._n * self.frame_s
        if due > now:
            await asyncio.sleep(due - now)
            now = time.monotonic()
        else:
            self.late_s = max(self.late_s, now - due)
        if self._restart:
            self._restart, self._pos = False, 0
        pts = self._n * self.ticks
        packet = av.Packet(self.frames[self._pos])
        packet.pts = pts
        packet.time_base = self.time_base
        self.log.record(pts, self.keys[self._pos], now)
        self._n += 1
        self._pos = (self._pos + 1) % len(self.frames)
        return packet


def video_track(loop: MediaLoop) -> ReplayTrack:
    return ReplayTrack("video", loop.video, clock_rate=VIDEO_CLOCK, frame_s=1 / FPS)


def audio_track(loop: MediaLoop) -> ReplayTrack:
    return ReplayTrack("audio", loop.audio, clock_rate=AUDIO_CLOCK, frame_s=AUDIO_FRAME_S)


def watch_keyframe_requests(sender: RTCRtpSender, track: ReplayTrack) -> None:
    """Restart the track's loop at its keyframe when the server asks (PLI or FIR)."""
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            track.request_keyframe()
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
