"""What one receiver learns from one incoming RTP stream, without decoding: packets, loss,
jitter, freezes, keyframe completion and one-way latency. Pure logic (no aiortc, no I/O):
rtp_probe.py feeds it the header fields of each packet, so it tests fast.

Loss: the SFU gives each receiver a gap-free sequence space per stream, so a receiver's
missing sequence numbers are losses; a retransmission (RTX) that fills one recovers it.
The ratio is (missing at the end) / (highest - first + 1).

Jitter: RFC 3550 interarrival jitter, from arrival times and RTP timestamps, in seconds.

Freezes (video): a gap between two complete frames longer than max(3 frame intervals,
one interval + 150 ms), the definition of WebRTC's freezeCount.

Latency: the SFU forwards payloads byte for byte but rewrites RTP timestamps by a constant
offset per receiver. The sender (same process, same monotonic clock) logs each frame's
send time by presentation timestamp and the latest timestamp of each distinct frame by a
fingerprint of its first coded bytes. The receiver looks the fingerprint of a frame start
up, derives offset = RTP timestamp - pts, and trusts it once two different frames agree.
From then on each packet maps back in O(1): send time = log[(ts - offset) mod 2^32], and
latency = arrival - send time, per packet (so a frame's later packets include the time the
sender took to send the earlier ones, as a browser would see it). A lookup that fails at a
frame start (the stream was rebound to another producer) starts the learning again. When
several remote senders replay the same loop (three-party calls), the log holding the most
recent sending of that frame is the one in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .stats import LogHistogram

MASK16, MASK32 = 0xFFFF, 0xFFFFFFFF
MAX_TRACKED_GAP = 2000  # a jump larger than this is a rebind, not a loss burst


class SendLogLike(Protocol):
    kind: str
    sent: Any  # Mapping[int, float]: pts & 0xFFFFFFFF -> send time
    by_fingerprint: dict[bytes, int]


class StreamStats:
    __slots__ = ("base_ext", "bytes", "candidate", "clock_rate", "confirmed", "duplicates",
                 "first_at", "fps", "frame_key", "frame_packets", "frame_seq0", "frame_ts",
                 "frames", "freeze_s", "freezes", "highest_ext", "jitter", "keyframe_at",
                 "kind", "last_arrival", "last_frame_at", "last_ts", "latency", "logs",
                 "lookups_missed", "missing", "offset", "packets", "recovered", "relearned",
                 "rtx")

    def __init__(self, kind: str, clock_rate: int, logs: Callable[[], Sequence[SendLogLike]],
                 latency: LogHistogram, fps: float = 30.0) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self.logs = logs
        self.latency = latency
        self.fps = fps
        self.packets = 0
        self.bytes = 0
        self.rtx = 0
        self.recovered = 0
        self.duplicates = 0
        self.first_at: float | None = None
        self.base_ext = -1
        self.highest_ext = -1
        self.missing: set[int] = set()
        self.jitter = 0.0
        self.last_arrival = 0.0
        self.last_ts = 0
        # frames (video)
        self.frames = 0
        self.frame_ts = -1
        self.frame_seq0 = 0
        self.frame_packets = 0
        self.frame_key = False
        self.keyframe_at: float | None = None
        self.last_frame_at: float | None = None
        self.freezes = 0
        self.freeze_s = 0.0
        # latency
        self.candidate: tuple[int, int, Any] | None = None  # (offset, ts, log)
        self.confirmed: tuple[int, Any] | None = None  # (offset, log)
        self.offset = 0
        self.lookups_missed = 0
        self.relearned = 0

    # ----------------------------------------------------------------------------------
    def on_packet(self, now: float, seq: int, ts: int, marker: bool, size: int,
                  frame_start: bytes | None, keyframe: bool) -> None:
        """One original (not RTX) packet. frame_start: the fingerprint when this packet
        starts a frame (every Opus packet; VP8 partition 0 start), else None."""
        self.packets += 1
        self.bytes += size
        ext = self._extend(seq)
        if self.first_at is None:
            self.first_at = now
            self.base_ext = self.highest_ext = ext
        elif ext > self.highest_ext:
            gap = ext - self.highest_ext
            if gap > MAX_TRACKED_GAP:  # a new sequence space: count it from here
                self.base_ext += gap - 1
            else:
                self.missing.update(range(self.highest_ext + 1, ext))
            self.highest_ext = ext
        elif ext in self.missing:
            self.missing.discard(ext)
        else:
            self.duplicates += 1
        # RFC 3550 jitter
        if self.packets > 1:
            dts = ((ts - self.last_ts + (1 << 31)) & MASK32) - (1 << 31)
            d = (now - self.last_arrival) - dts / self.clock_rate
            self.jitter += (abs(d) - self.jitter) / 16
        self.last_arrival, self.last_ts = now, ts
        if self.kind == "video":
            self._on_video_packet(now, ext, ts, marker, frame_start is not None, keyframe)
        self._on_latency(now, ts, frame_start)

    def on_rtx(self, original_seq: int) -> None:
        """A retransmission carrying original_seq: fills a gap if it was missing."""
        self.rtx += 1
        if self.first_at is None:
            return
        ext = self._extend(original_seq)
        if ext in self.missing:
            self.missing.discard(ext)
            self.recovered += 1

    def end(self, now: float) -> None:
        """The call ended: a freeze still running at the end counts too."""
        if self.kind == "video" and self.last_frame_at is not None:
            gap = now - self.last_frame_at
            if gap > self._freeze_threshold():
                self.freezes += 1
                self.freeze_s += gap

    # ----------------------------------------------------------------------------------
    def _extend(self, seq: int) -> int:
        if self.highest_ext < 0:
            return (1 << 20) + seq
        delta = (seq - self.highest_ext) & MASK16
        if delta >= 0x8000:
            delta -= 0x10000
        return self.highest_ext + delta

    def _freeze_threshold(self) -> float:
        interval = 1.0 / self.fps
        return max(3 * interval, interval + 0.150)

    def _on_video_packet(self, now: float, ext: int, ts: int, marker: bool, start: bool,
                         keyframe: bool) -> None:
        if ts != self.frame_ts:
            self.frame_ts = ts
            self.frame_seq0 = ext if start else -1
            self.frame_packets = 0
            self.frame_key = keyframe and start
        self.frame_packets += 1
        if not marker:
            return
        complete = self.frame_seq0 >= 0 and self.frame_packets == ext - self.frame_seq0 + 1
        if not complete:
            return  # an incomplete frame is not shown: the gap counts toward a freeze
        self.frames += 1
        if self.frame_key and self.keyframe_at is None:
            self.keyframe_at = now
        if self.last_frame_at is not None:
            gap = now - self.last_frame_at
            if gap > self._freeze_threshold():
                self.freezes += 1
                self.freeze_s += gap
        if self.keyframe_at is not None:
            self.last_frame_at = now

    def _on_latency(self, now: float, ts: int, frame_start: bytes | None) -> None:
        if frame_start is not None:
            self._learn(now, ts, frame_start)
        if self.confirmed is None:
            return
        offset, log = self.confirmed
        sent = log.sent.get((ts - offset) & MASK32)
        if sent is None:
            self.lookups_missed += 1
            return
        self.latency.add(max(0.0, now - sent))

    def _learn(self, now: float, ts: int, key: bytes) -> None:
        confirmed = self.confirmed
        if confirmed is not None:
            # Fast path (every audio packet starts a frame): the confirmed sender's log
            # still maps this frame to the same offset, so it is the stream in flight; no
            # need to look through every remote log. Anything else learns again below.
            offset, log = confirmed
            pts = log.by_fingerprint.get(key)
            if pts is not None and (ts - pts) & MASK32 == offset:
                return
        best: tuple[float, int, Any] | None = None
        for log in self.logs():
            pts = log.by_fingerprint.get(key)
            if pts is None:
                continue
            sent = log.sent.get(pts)
            if sent is None or sent > now:
                continue
            if best is None or sent > best[0]:
                best = (sent, pts, log)
        if best is None:
            if self.confirmed is not None:
                self.relearned += 1
            self.confirmed = self.candidate = None
            return
        _, pts, log = best
        offset = (ts - pts) & MASK32
        if self.confirmed is not None:
            if self.confirmed == (offset, log):
                return
            self.relearned += 1
            self.confirmed = None
        if self.candidate is not None and self.candidate[0] == offset \
                and self.candidate[2] is log and self.candidate[1] != ts:
            self.confirmed = (offset, log)
            self.candidate = None
        else:
            self.candidate = (offset, ts, log)

    # ----------------------------------------------------------------------------------
    @property
    def expected(self) -> int:
        return 0 if self.first_at is None else self.highest_ext - self.base_ext + 1

    @property
    def lost(self) -> int:
        return len(self.missing)

    def report_block_fields(self) -> tuple[int, int, int, int]:
        """(cumulative lost, expected, extended highest sequence number, jitter in RTP
        timestamp units): what an RTCP receiver report says about this stream."""
        highest = (self.highest_ext - (1 << 20)) & MASK32 if self.first_at is not None else 0
        return self.lost, self.expected, highest, int(self.jitter * self.clock_rate)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "packets": self.packets, "bytes": self.bytes,
                "expected": self.expected, "lost": self.lost, "rtx": self.rtx,
                "recovered": self.recovered, "duplicates": self.duplicates,
                "jitter_ms": round(self.jitter * 1000, 3), "frames": self.frames,
                "freezes": self.freezes, "freeze_s": round(self.freeze_s, 3),
                "latency_lookups_missed": self.lookups_missed, "relearned": self.relearned}


SUMMED_FIELDS = ("packets", "bytes", "expected", "lost", "rtx", "recovered", "duplicates",
                 "frames", "freezes", "freeze_s", "lookups_missed")


def fold_streams(kind: str, streams: Sequence[StreamStats], decoded_frames: int = 0
                 ) -> dict[str, Any]:
    """Several streams of one receiver folded into the one summary the report reads (a
    receiver usually has one stream; a new SSRC appears only when the server rebinds).
    Shared by the aiortc probe and the raw receiver so both paths report alike."""
    out: dict[str, Any] = {"kind": kind, "streams": len(streams)}
    for key in SUMMED_FIELDS:
        out[key] = sum(getattr(s, key) for s in streams)
    out["jitter_ms"] = round(max((s.jitter for s in streams), default=0.0) * 1000, 3)
    out["decoded_frames"] = decoded_frames
    return out
