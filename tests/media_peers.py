"""Real aiortc client peers for SFU tests: each sends a camera that paints its own colour and
a microphone tone, and decodes what it receives, so a test can tell who it is seeing."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from av import VideoFrame

VIDEO_CLOCK = 90000


class ColourCamera(MediaStreamTrack):
    """640x480 at 30 fps, a solid colour plus a moving bar (so frames differ)."""

    kind = "video"

    def __init__(self, bgr: tuple[int, int, int], width: int = 320, height: int = 240,
                 noise: bool = False) -> None:
        super().__init__()
        self.bgr = bgr
        # Noise in the bottom quarter makes the encoder use whatever bitrate it may: a
        # solid colour compresses to almost nothing, which hides any bitrate cap.
        self.noise = noise
        self._rng = np.random.default_rng(7)
        self.width, self.height = width, height
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        wait = self._start + self._count / 30 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        image = np.empty((self.height, self.width, 3), np.uint8)
        image[:] = self.bgr
        x = (self._count * 4) % self.width
        image[:, x:x + 8] = 255 - np.array(self.bgr, np.uint8)
        # Grain of +-30 on a quarter of the frame: measured with aiortc's Vp8Encoder at
        # 320x240, it codes to ~0.31 Mbps at a 0.3 Mbps target and ~1.49 at 1.5.
        if self.noise:
            rows = self.height // 4
            grain = self._rng.integers(-30, 31, (rows, self.width, 3), np.int16)
            image[-rows:] = np.clip(image[-rows:].astype(np.int16) + grain, 0, 255)
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = int(self._count * VIDEO_CLOCK / 30)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class PhotoCamera(MediaStreamTrack):
    """A still photo as a 30 fps camera (try-on tests: a real person in front of it)."""

    kind = "video"

    def __init__(self, image_bgr: np.ndarray) -> None:
        super().__init__()
        self.image = np.ascontiguousarray(image_bgr)
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        wait = self._start + self._count / 30 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = VideoFrame.from_ndarray(self.image, format="bgr24")
        frame.pts = int(self._count * VIDEO_CLOCK / 30)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


def astronaut_image(width: int = 640, height: int = 480) -> np.ndarray:
    """scikit-image's astronaut photo (a person, head to waist; inside its wheel, no
    download) scaled to the frame height and centred on grey."""
    import cv2
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    image = np.full((height, width, 3), 96, np.uint8)
    side = min(width, round(photo.shape[1] * height / photo.shape[0]))
    left = (width - side) // 2
    image[:, left:left + side] = cv2.resize(photo, (side, height),
                                            interpolation=cv2.INTER_AREA)
    return image


class Received:
    """What a peer decoded from one remote track."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames = 0
        self.last: Any = None
        self.first_at: float | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.frames += 1
                self.last = frame
                if self.first_at is None:
                    self.first_at = time.monotonic()
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def mean_bgr(self) -> tuple[int, int, int]:
        image = self.last.to_ndarray(format="bgr24")
        # the moving bar is thin: the median is the camera's colour
        return tuple(int(v) for v in np.median(image.reshape(-1, 3), axis=0))


class MediaPeer:
    def __init__(self, name: str, bgr: tuple[int, int, int] = (0, 0, 255), *,
                 video: bool = True, audio: bool = True, codec: str | None = None,
                 noise: bool = False, h264_profile: str | None = None,
                 camera: MediaStreamTrack | None = None) -> None:
        self.name = name
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.received: list[Received] = []
        # Negotiation steps must not interleave (offer/answer from both directions).
        self.negotiating = asyncio.Lock()
        self.closed = False
        self.camera = camera if camera is not None else \
            ColourCamera(bgr, noise=noise) if video else None
        if audio:
            self.pc.addTrack(AudioStreamTrack())
        if self.camera is not None:
            self.pc.addTrack(self.camera)
            if codec is not None:
                caps = RTCRtpSender.getCapabilities("video").codecs
                prefs = [c for c in caps if c.mimeType.lower() == codec.lower() and (
                    h264_profile is None
                    or c.parameters.get("profile-level-id") == h264_profile)]
                for t in self.pc.getTransceivers():
                    if t.kind == "video":
                        t.setCodecPreferences(prefs)
        self.pc.on("track", lambda track: self.received.append(Received(track)))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def answer_offer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def video_in(self) -> list[Received]:
        return [r for r in self.received if r.track.kind == "video"]

    def video_from_stream(self, stream_id: str) -> Received | None:
        """The received video whose m-section the server labelled ``a=msid:<stream_id>``."""
        remote = self.pc.remoteDescription
        if remote is None:
            return None
        mid = None
        for section in remote.sdp.split("\r\nm=")[1:]:
            if f"a=msid:{stream_id} " in section:
                mid = next((line[6:] for line in section.split("\r\n")
                            if line.startswith("a=mid:")), None)
        for transceiver in self.pc.getTransceivers():
            if mid is not None and transceiver.mid == mid:
                return next((r for r in self.received
                             if r.track is transceiver.receiver.track), None)
        return None

    def video_by_mid(self, mid: str) -> Received | None:
        """The received video of the m-section with this mid (what media.sources names)."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid == mid:
                return next((r for r in self.received
                             if r.track is transceiver.receiver.track), None)
        return None

    def audio_in(self) -> list[Received]:
        return [r for r in self.received if r.track.kind == "audio"]

    async def wait_frames(self, count: int, timeout: float = 15.0, tracks: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            video = self.video_in()
            if len([r for r in video if r.frames >= count]) >= tracks:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: frames per video track "
                             f"{[r.frames for r in self.video_in()]} (wanted {count} on "
                             f"{tracks})")

    async def inbound_stats(self) -> list[Any]:
        out = []
        for transceiver in self.pc.getTransceivers():
            report = await transceiver.receiver.getStats()
            out += [s for s in report.values() if s.type == "inbound-rtp"]
        return out

    async def close(self) -> None:
        if self.closed:
            return  # aiortc raises on a second close
        self.closed = True
        for r in self.received:
            r.task.cancel()
        await self.pc.close()


def colour_close(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))
