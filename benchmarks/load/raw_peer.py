"""The cheap media path of the load tool: a participant that publishes and receives RTP
packets itself, with aiortc doing ICE, DTLS and SDP only.

Why: a full aiortc RTCPeerConnection per simulated participant (media_peer.LoadPeer)
costs the generator ~4% of a core per consultation (per-frame ``av.Packet``s, aiortc's
packetizer, an ``await`` per packet in its sender and receiver, an RTCP task per track),
so a generator pinned on one core could not drive more than ~20 consultations. Here:

* ``mediaserver.aiortc_adapter.PeerAdapter`` (the SFU's own adapter, also used by
  benchmarks/fanout.py) takes SRTP straight from the ICE socket, unprotects it
  synchronously and hands plaintext packets to ``RawPeer._on_rtp``/``_on_rtcp``;
  sending is a synchronous protect + ``sendto``.
* Publishing replays benchmarks/fanout_media.py's loop, already split into VP8 RTP
  payloads (payload descriptor included) and Opus payloads: no packetizing at run time.
  ONE task per worker process (``MediaClock``) sends every published track's frames on
  schedule (a heap of due times) and every raw peer's RTCP once a second, instead of an
  asyncio task (or two) per track.
* Receiving counts each packet into receiver_stats.StreamStats, the same accounting as the
  aiortc probe (loss, jitter, frames, freezes, first packet, first keyframe, latency
  against the senders' ``SendLog``), so both paths report the same figures.
* RTCP as a client sends it, but once a second per peer in one compound packet: a sender
  report per published track (the SFU forwards them), one receiver report with a block
  per received stream (the SFU's loss-based estimate reads them) and a REMB of
  ``REMB_BPS`` (the SFU caps publishers from it). A PLI or FIR restarts the video loop at
  its keyframe; NACKs are only counted (loopback does not lose, and the loop is replayed,
  so there is nothing useful to retransmit).

Decoding is not done here: the sampled decoding receivers stay on the aiortc path.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from benchmarks.fanout_media import AUDIO_CLOCK, CACHE_DIR, FPS, VIDEO_CLOCK, load_media
from mediaserver.aiortc_adapter import PeerAdapter, RelayTrack
from mediaserver.rtp_header import parse_header

from .media_source import AUDIO_FRAME_S, FINGERPRINT_BYTES, SendLog
from .receiver_stats import SendLogLike, StreamStats, fold_streams
from .rtp_probe import vp8_frame_start
from .stats import LogHistogram

log = logging.getLogger(__name__)

MASK16, MASK32 = 0xFFFF, 0xFFFFFFFF
REMB_BPS = 5_000_000  # what the simulated clients say they can receive: never the limit
REPORT_INTERVAL_S = 1.0
# Frames due within this much are sent in the same wake-up: bounds the clock's wake-ups
# to ~1000/s however many tracks there are. The RTP timestamps stay on schedule and the
# send log holds the real send time, so latency is not skewed by it.
EARLY_S = 0.001
NTP_EPOCH_OFFSET = 2_208_988_800
_pack_header = struct.Struct("!BBHII").pack
_seq_ts_ssrc = struct.Struct("!HII").unpack_from
_FID = re.compile(r"^a=ssrc-group:FID (\d+) (\d+)", re.MULTILINE)


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (sender reports)."""
    return int((time.time() + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


# Media ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PacketLoop:
    """The replay loop as RTP payloads, with each frame's fingerprint as a receiver will
    compute it from the frame's first packet (receiver_stats.py aligns on it)."""

    video: list[list[bytes]]  # per frame: VP8 payloads, descriptor included; frame 0 key
    video_keys: list[bytes]
    audio: list[list[bytes]]  # per 20 ms: one Opus payload
    audio_keys: list[bytes]


_packet_loop: PacketLoop | None = None


def load_packet_loop(cache_dir: Path = CACHE_DIR) -> PacketLoop:
    """The fan-out benchmark's media, as packets (loaded once per process)."""
    global _packet_loop
    if _packet_loop is None:
        media = load_media(cache_dir)
        keys = []
        for payloads in media.video:
            start = vp8_frame_start(payloads[0])
            offset = start[0] if start is not None else 0
            keys.append(bytes(payloads[0][offset:offset + FINGERPRINT_BYTES]))
        _packet_loop = PacketLoop(
            video=media.video, video_keys=keys, audio=[[p] for p in media.audio],
            audio_keys=[bytes(p[:FINGERPRINT_BYTES]) for p in media.audio])
    return _packet_loop


class RawTrack:
    """One published stream: its place in the loop, its RTP state and its send log.

    ``emit`` sends one frame now; the worker's ``MediaClock`` calls it on schedule."""

    __slots__ = ("clock_rate", "frame_s", "frames", "keyframe_requests", "keys", "kind",
                 "late_s", "log", "n", "octets", "packets", "pos", "pt", "restart", "send",
                 "seq", "ssrc", "start", "stopped", "ticks", "ts0", "video")

    def __init__(self, kind: str, frames: list[list[bytes]], keys: list[bytes], *,
                 clock_rate: int, frame_s: float) -> None:
        self.kind = kind
        self.video = kind == "video"
        self.frames = frames
        self.keys = keys
        self.clock_rate = clock_rate
        self.frame_s = frame_s
        self.ticks = round(clock_rate * frame_s)
        self.log = SendLog(kind)
        self.keyframe_requests = 0
        self.late_s = 0.0  # the worst lag behind schedule: a saturated generator shows here
        self.send: Callable[[bytes], None] = _drop
        self.ssrc = 0
        self.pt = 0
        self.seq = random.randrange(1 << 16)
        self.ts0 = random.randrange(1 << 32)
        self.start = 0.0
        self.n = 0  # frames sent: the RTP timestamp runs on across restarts
        self.pos = 0  # position in the loop
        self.restart = False
        self.stopped = False
        self.packets = 0
        self.octets = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.restart = True

    def due(self) -> float:
        return self.start + self.n * self.frame_s

    def rtp_now(self, now: float) -> int:
        """The RTP timestamp that corresponds to ``now`` (sender reports)."""
        return (self.ts0 + int((now - self.start) * self.clock_rate)) & MASK32

    def emit(self, now: float) -> None:
        """Send the next frame: every packet of it, back to back, then log it."""
        if self.restart:
            self.restart, self.pos = False, 0
        pos = self.pos
        payloads = self.frames[pos]
        ts = (self.ts0 + self.n * self.ticks) & MASK32
        self.log.record(ts, self.keys[pos], now)
        send, seq, ssrc, pt = self.send, self.seq, self.ssrc, self.pt
        if self.video:
            last = len(payloads) - 1
            for i, payload in enumerate(payloads):
                send(_pack_header(0x80, pt | 0x80 if i == last else pt, seq, ts, ssrc)
                     + payload)
                seq = (seq + 1) & MASK16
                self.octets += len(payload)
        else:  # Opus: one packet, marker on the first of the talk spurt
            payload = payloads[0]
            send(_pack_header(0x80, pt | 0x80 if self.n == 0 else pt, seq, ts, ssrc)
                 + payload)
            seq = (seq + 1) & MASK16
            self.octets += len(payload)
        self.packets += len(payloads)
        self.seq = seq
        self.n += 1
        self.pos = (pos + 1) % len(self.frames)


class MediaClock:
    """The one task of a worker process that sends all raw media and RTCP.

    A heap orders the tracks by their next frame's due time; each wake-up sends every
    frame due (within ``EARLY_S``), then sleeps until the next. Once a second it sends
    each registered peer's RTCP. A track joins with ``add_track`` (its first frame goes
    out at once) and leaves lazily once stopped."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, RawTrack]] = []
        self._order = itertools.count()
        self._peers: set[RawPeer] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = 0.0
        self._next_reports = 0.0
        self.errors = 0

    def add_track(self, track: RawTrack) -> None:
        now = time.monotonic()
        track.start = now
        heapq.heappush(self._heap, (now, next(self._order), track))
        self._ensure_running()
        wake = self._wake
        if wake is not None and not wake.done() and now < self._wake_at:
            wake.set_result(None)  # the new track's first frame is due before the sleep ends

    def add_peer(self, peer: RawPeer) -> None:
        self._peers.add(peer)
        self._ensure_running()

    def remove_peer(self, peer: RawPeer) -> None:
        self._peers.discard(peer)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._next_reports = time.monotonic() + REPORT_INTERVAL_S
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = time.monotonic
        heap = self._heap
        order = self._order
        replace, pop = heapq.heapreplace, heapq.heappop
        while True:
            now = clock()
            horizon = now + EARLY_S
            while heap and heap[0][0] <= horizon:
                due, _, track = heap[0]
                if track.stopped:
                    pop(heap)
                    continue
                if now - due > track.late_s:
                    track.late_s = now - due
                try:
                    track.emit(now)
                except Exception:  # one broken peer must not stop everyone's media
                    self.errors += 1
                    log.exception("sending a frame failed")
                    track.stopped = True
                    pop(heap)
                    continue
                replace(heap, (track.due(), next(order), track))
            if now >= self._next_reports:
                self._next_reports = max(self._next_reports + REPORT_INTERVAL_S,
                                         now + REPORT_INTERVAL_S / 2)
                for peer in list(self._peers):
                    try:
                        peer.send_reports(now)
                    except Exception:
                        self.errors += 1
                        log.exception("sending RTCP failed")
            wake_at = min(heap[0][0] if heap else now + REPORT_INTERVAL_S, self._next_reports)
            delay = wake_at - clock()
            if delay <= 0:
                await asyncio.sleep(0)  # let the receive path run between bursts
                continue
            wake: asyncio.Future[None] = loop.create_future()
            handle = loop.call_later(delay, _resolve, wake)
            self._wake, self._wake_at = wake, wake_at
            try:
                await wake
            finally:
                handle.cancel()
                self._wake = None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _drop(_: bytes) -> None:
    return None


# The peer ---------------------------------------------------------------------------------
class RawPeer:
    """One participant's connection to the SFU on the packet-level path; the same surface
    as media_peer.LoadPeer for the scenario (offer/answer, logs, figures, close)."""

    def __init__(self, name: str, clock: MediaClock, packets: PacketLoop, *, video: bool,
                 remote_logs: Callable[[], Sequence[SendLogLike]],
                 latency: dict[str, LogHistogram],
                 servers: Sequence[dict[str, Any]] = ()) -> None:
        self.name = name
        self.clock = clock
        self.remote_logs = remote_logs
        self.latency = latency
        self.negotiating = asyncio.Lock()
        self.closed = False
        self.adapter = PeerAdapter([{k: s[k] for k in ("urls", "username", "credential")
                                     if s.get(k) is not None} for s in servers])
        self.pc = self.adapter.pc
        self.tracks = [RawTrack("audio", packets.audio, packets.audio_keys,
                                clock_rate=AUDIO_CLOCK, frame_s=AUDIO_FRAME_S)]
        if video:
            self.tracks.append(RawTrack("video", packets.video, packets.video_keys,
                                        clock_rate=VIDEO_CLOCK, frame_s=1 / FPS))
        for track in self.tracks:
            self.pc.addTrack(RelayTrack(track.kind))
        self.adapter.adopt_transceivers()
        self._own_slots = list(self.adapter.send_slots)
        self._publishing = False
        self.adapter.on_rtp = self._on_rtp
        self.adapter.on_rtcp = self._on_rtcp
        self.adapter.on_connected = self.adapter.on_slot_ready = self._check_ready
        # receiving
        self.streams: dict[int, StreamStats] = {}  # by SSRC: one per received stream
        self._media_pt: dict[int, tuple[str, int]] = {}  # payload type -> (kind, clock)
        self._rtx_pt: dict[int, str] = {}  # RTX payload type -> kind
        self._rtx_of: dict[int, int] = {}  # RTX SSRC -> media SSRC (the SDP's FID groups)
        self._last: dict[str, StreamStats] = {}
        self._sr: dict[int, tuple[int, float]] = {}  # SSRC -> (LSR, when) from its SR
        self._reported: dict[int, tuple[int, int]] = {}  # SSRC -> (lost, expected) last RR
        self.nacks_received = 0
        self.unknown_packets = 0
        self.bad_rtcp = 0

    # Surface shared with LoadPeer ------------------------------------------------------
    @property
    def logs(self) -> list[SendLogLike]:
        return [t.log for t in self.tracks]

    def first_packet_at(self, kind: str) -> float | None:
        times = [s.first_at for s in self.streams.values()
                 if s.kind == kind and s.first_at is not None]
        return min(times) if times else None

    def first_keyframe_at(self) -> float | None:
        times = [s.keyframe_at for s in self.streams.values()
                 if s.kind == "video" and s.keyframe_at is not None]
        return min(times) if times else None

    def sent_frames(self) -> dict[str, int]:
        return {t.kind: t.log.frames for t in self.tracks}

    def keyframe_requests(self) -> int:
        return sum(t.keyframe_requests for t in self.tracks)

    def generator_lag_s(self) -> float:
        return max((t.late_s for t in self.tracks), default=0.0)

    def received_summaries(self) -> list[dict[str, Any]]:
        return [fold_streams(s.kind, [s]) for s in self.streams.values() if s.packets]

    # Negotiation ----------------------------------------------------------------------
    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.adapter.adopt_transceivers()
        self._learn(sdp)

    async def answer_offer(self, sdp: str) -> str:
        """Answer a server offer (a colleague joined, streams were added or removed)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        # Before aiortc's connect task runs: its receivers must never start (no decoder
        # thread, no RTCP task); the adapter only records what was negotiated.
        self.adapter.adopt_transceivers()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._learn(sdp)
        return str(self.pc.localDescription.sdp)

    def _learn(self, remote_sdp: str) -> None:
        """Payload types (media and RTX) and RTX SSRCs of what we may receive."""
        for transceiver in self.pc.getTransceivers():
            for codec in self.adapter.negotiated_codecs(transceiver):
                mime = codec.mimeType.lower()
                if mime.endswith("/rtx"):
                    self._rtx_pt[codec.payloadType] = transceiver.kind
                else:
                    self._media_pt[codec.payloadType] = (transceiver.kind, codec.clockRate)
        for match in _FID.finditer(remote_sdp):
            self._rtx_of[int(match.group(2))] = int(match.group(1))

    def _check_ready(self) -> None:
        """Start publishing once connected and our own m-sections are negotiated."""
        if self._publishing or self.closed or not self.adapter.connected \
                or not all(slot.ready for slot in self._own_slots):
            return
        self._publishing = True
        for track, slot in zip(self.tracks, self._own_slots, strict=True):
            mime = "video/vp8" if track.kind == "video" else "audio/opus"
            codec = next(c for c in slot.codecs if c.mimeType.lower() == mime)
            track.ssrc, track.pt = slot.ssrc, codec.payloadType
            track.send = self.adapter.send_rtp
            self.clock.add_track(track)
        self.clock.add_peer(self)

    # Receiving ------------------------------------------------------------------------
    def _on_rtp(self, data: bytes) -> None:
        """One plaintext RTP packet (per-packet hot path: no allocation beyond the
        fingerprint)."""
        now = time.monotonic()
        n = len(data)
        if data[0] == 0x80 and n >= 12:  # what the SFU sends: no CSRC, extension, padding
            seq, ts, ssrc = _seq_ts_ssrc(data, 2)
            offset, end = 12, n
        else:
            header = parse_header(data)
            if header is None:
                self.unknown_packets += 1
                return
            _, _, seq, ts, ssrc, offset = header
            end = n - data[-1] if data[0] & 0x20 else n
        b1 = data[1]
        stream = self.streams.get(ssrc)
        if stream is None:
            pt = b1 & 0x7F
            known = self._media_pt.get(pt)
            if known is None:
                if pt in self._rtx_pt:
                    self._on_rtx(ssrc, self._rtx_pt[pt], data, offset, end)
                else:
                    self.unknown_packets += 1
                return
            kind, clock_rate = known
            stream = StreamStats(kind, clock_rate, self._remote(kind), self.latency[kind])
            self.streams[ssrc] = stream
        self._last[stream.kind] = stream
        keyframe = False
        if stream.kind == "video":
            start = vp8_frame_start(data, offset) if offset < end else None
            if start is None:
                key = None
            else:
                i, keyframe = start
                key = data[i:i + FINGERPRINT_BYTES]
        else:
            key = data[offset:offset + FINGERPRINT_BYTES]
        stream.on_packet(now, seq, ts, b1 > 127, end - offset, key, keyframe)

    def _on_rtx(self, ssrc: int, kind: str, data: bytes, offset: int, end: int) -> None:
        stream = self.streams.get(self._rtx_of.get(ssrc, -1)) or self._last.get(kind)
        if stream is not None and end - offset >= 2:
            stream.on_rtx((data[offset] << 8) | data[offset + 1])

    def _remote(self, kind: str) -> Callable[[], Sequence[SendLogLike]]:
        return lambda: [log for log in self.remote_logs() if log.kind == kind]

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            self.bad_rtcp += 1
            return
        now = time.monotonic()
        for packet in packets:
            if isinstance(packet, RtcpPsfbPacket):
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    for track in self.tracks:
                        if track.video:
                            track.request_keyframe()
            elif isinstance(packet, RtcpRtpfbPacket):
                if packet.fmt == RTCP_RTPFB_NACK:
                    self.nacks_received += len(packet.lost)
            elif isinstance(packet, RtcpSrPacket):
                self._sr[packet.ssrc] = ((packet.sender_info.ntp_timestamp >> 16) & MASK32, now)

    # RTCP out (once a second, from the MediaClock) ---------------------------------------
    def send_reports(self, now: float) -> None:
        """SR per published track, RR with a block per received stream, REMB: one
        compound packet, as a client would send in the same interval."""
        if self.closed or not self.adapter.connected:
            return
        rtcp_ssrc = self.adapter.rtcp_ssrc()
        parts = []
        ntp = ntp_now()
        for track in self.tracks:
            if track.packets:
                parts.append(bytes(RtcpSrPacket(ssrc=track.ssrc, sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp, rtp_timestamp=track.rtp_now(now),
                    packet_count=track.packets & MASK32,
                    octet_count=track.octets & MASK32))))
        blocks = []
        for ssrc, stream in self.streams.items():
            if stream.first_at is None:
                continue
            lost, expected, highest, jitter = stream.report_block_fields()
            lost0, expected0 = self._reported.get(ssrc, (0, 0))
            self._reported[ssrc] = (lost, expected)
            interval = expected - expected0
            fraction = min(255, max(0, lost - lost0) * 256 // interval) if interval > 0 else 0
            lsr, at = self._sr.get(ssrc, (0, now))
            blocks.append(RtcpReceiverInfo(
                ssrc=ssrc, fraction_lost=fraction, packets_lost=min(lost, 0x7FFFFF),
                highest_sequence=highest, jitter=jitter, lsr=lsr,
                dlsr=int((now - at) * 65536) if lsr else 0))
        if blocks or not parts:
            parts.append(bytes(RtcpRrPacket(ssrc=rtcp_ssrc, reports=blocks[:31])))
        if self.streams:
            parts.append(bytes(RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                fci=pack_remb_fci(REMB_BPS, list(self.streams)[:255]))))
        self.adapter.send_rtcp(b"".join(parts))

    # The end ----------------------------------------------------------------------------
    async def close(self, now: float) -> None:
        if self.closed:
            return
        self.closed = True
        self.clock.remove_peer(self)
        for track in self.tracks:
            track.stopped = True
            track.send = _drop
        for stream in self.streams.values():
            stream.end(now)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.adapter.close(), 5)
