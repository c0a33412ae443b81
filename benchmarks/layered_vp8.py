"""A VP8 publisher with temporal layers (L1T3), as Chromium sends with `scalabilityMode`.

aiortc's own VP8 sender has no temporal layers, and the SFU's layer thinning needs a real
layered stream to be tested and measured without a browser. This module makes one:

* ``encode_l1t3`` encodes frames with libvpx (through PyAV/FFmpeg) in its 3-layer pattern
  (TID 0, 2, 1, 2 repeating, FFmpeg's ``ts_layering_mode=3``) and error-resilient mode.
  Error resilience is what makes dropping layers safe: without it every frame updates the
  entropy context that later frames decode with, so a receiver missing a TL2 frame cannot
  decode the next TL0 frame (checked here: decoding only the TL0 frames of such a stream
  fails; with it, they decode bit-exactly as in the full stream).
* ``packetize`` writes the RFC 7741 payload descriptor with picture id, TL0PICIDX and TID.
* ``LayeredPublisher`` sends the result as raw RTP from a ``PeerAdapter`` peer, in real
  time, restarting at the keyframe when asked for one (PLI/FIR).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import random
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

import av
import numpy as np
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket

from mediaserver.aiortc_adapter import PeerAdapter, RelayTrack

VIDEO_CLOCK = 90_000
PATTERN = (0, 2, 1, 2)  # TID of each frame in the repeating 4-frame group
MAX_PAYLOAD = 1100
_RTP = struct.Struct("!BBHII")
_DESCRIPTOR = struct.Struct("!BBHBB")  # X|S|PID, I|L|T, M|picture id, TL0PICIDX, TID|Y
RTCP_PSFB_FIR = 4


@dataclass(frozen=True, slots=True)
class LayeredFrame:
    tid: int
    data: bytes
    keyframe: bool


def encode_l1t3(frames: Iterable[av.VideoFrame], *, fps: int = 30,
                bitrate: int = 1_000_000) -> list[LayeredFrame]:
    """Encode with libvpx's 3-layer pattern; frame ``i`` belongs to layer PATTERN[i % 4]."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.time_base = fractions.Fraction(1, fps)
    codec.bit_rate = bitrate
    codec.pix_fmt = "yuv420p"
    third = bitrate // 1000
    codec.options = {
        "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
        "error-resilient": "1",
        "ts-parameters": (f"ts_number_layers=3:ts_target_bitrate={third // 2},"
                          f"{third * 3 // 4},{third}:ts_rate_decimator=4,2,1:"
                          "ts_periodicity=4:ts_layer_id=0,2,1,2:ts_layering_mode=3"),
    }
    out: list[LayeredFrame] = []
    for i, frame in enumerate(frames):
        if i == 0:
            codec.width, codec.height = frame.width, frame.height
        frame.pts = i
        out.extend(_layered(packet) for packet in codec.encode(frame))
    out.extend(_layered(packet) for packet in codec.encode(None))
    return out


def _layered(packet: av.Packet) -> LayeredFrame:
    # The layer follows the input frame's position in the pattern (its pts), which stays
    # right even if the encoder ever dropped a frame.
    return LayeredFrame(PATTERN[int(packet.pts) % 4], bytes(packet), packet.is_keyframe)


def moving_frames(count: int, width: int = 320, height: int = 240) -> list[av.VideoFrame]:
    """A picture that changes every frame (so every layer carries real content)."""
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    for n in range(count):
        image = np.empty((height, width, 3), np.uint8)
        image[..., 0] = (xs + 3 * n) % 256
        image[..., 1] = (ys + 2 * n) % 256
        image[..., 2] = 128
        x = (n * 5) % (width - 20)
        image[height // 3:height // 2, x:x + 20] = 255
        frames.append(av.VideoFrame.from_ndarray(image, format="bgr24"))
    return frames


def packetize(frame: LayeredFrame, picture_id: int, tl0picidx: int) -> list[bytes]:
    """RTP payloads of one frame, each with the full L1T3 descriptor (RFC 7741)."""
    payloads = []
    # N (non-reference) for the top layer: nothing references TL2 frames.
    non_ref = 0x20 if frame.tid == 2 else 0
    for start, pos in enumerate(range(0, len(frame.data), MAX_PAYLOAD)):
        b0 = 0x80 | non_ref | (0x10 if start == 0 else 0)
        payloads.append(_DESCRIPTOR.pack(b0, 0xE0, 0x8000 | picture_id,
                                         tl0picidx & 0xFF, frame.tid << 6)
                        + frame.data[pos:pos + MAX_PAYLOAD])
    return payloads


class LayeredPublisher:
    """A peer that publishes one pre-encoded L1T3 VP8 stream (no audio) in real time."""

    def __init__(self, frames: list[LayeredFrame], fps: int = 30) -> None:
        self.frames = frames
        self.fps = fps
        self.negotiating = asyncio.Lock()
        self.peer = PeerAdapter()
        self.pc = self.peer.pc
        self.pc.addTrack(RelayTrack("video"))
        self.peer.adopt_transceivers()
        self.peer.on_rtcp = self._on_rtcp
        self._ready = asyncio.Event()
        self.peer.on_connected = self.peer.on_slot_ready = self._check_ready
        self.sent_frames = [0, 0, 0]  # per TID
        self.keyframe_requests = 0
        self._restart = False
        self._task: asyncio.Task[None] | None = None

    # The negotiation interface of tests/media_peers.MediaPeer.
    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.peer.adopt_transceivers()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def answer_offer(self, sdp: str) -> str:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.peer.adopt_transceivers()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.peer.close()

    def _on_rtcp(self, data: bytes) -> None:
        with contextlib.suppress(ValueError):
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI,
                                                                         RTCP_PSFB_FIR):
                    self.keyframe_requests += 1
                    self._restart = True

    def _check_ready(self) -> None:
        video = [s for s in self.peer.send_slots if s.kind == "video"]
        if self.peer.connected and video and video[0].ready:
            self._ready.set()

    async def _run(self) -> None:
        await self._ready.wait()
        slot = next(s for s in self.peer.send_slots if s.kind == "video")
        pt = next(c.payloadType for c in slot.codecs if c.mimeType.lower() == "video/vp8")
        ssrc, send = slot.ssrc, self.peer.send_rtp
        seq, ts0 = random.randrange(1 << 16), random.randrange(1 << 32)
        picture_id, tl0picidx = random.randrange(1 << 15), random.randrange(256)
        start, n, pos = time.monotonic(), 0, 0
        while True:
            if self._restart:
                self._restart, pos = False, 0
            frame = self.frames[pos]
            if frame.tid == 0:
                tl0picidx = (tl0picidx + 1) & 0xFF
            payloads = packetize(frame, picture_id, tl0picidx)
            ts = (ts0 + n * VIDEO_CLOCK // self.fps) & 0xFFFFFFFF
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                send(_RTP.pack(0x80, pt | marker, seq, ts, ssrc) + payload)
                seq = (seq + 1) & 0xFFFF
            self.sent_frames[frame.tid] += 1
            picture_id = (picture_id + 1) & 0x7FFF
            n += 1
            # The loop wraps after a whole number of groups, back to the keyframe.
            pos = (pos + 1) % (len(self.frames) - len(self.frames) % len(PATTERN))
            await asyncio.sleep(max(0.0, start + n / self.fps - time.monotonic()))
