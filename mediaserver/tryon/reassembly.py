"""Rebuilding whole encoded video frames from a forwarded stream's RTP packets.

The try-on pipeline needs frames, the SFU sees packets. aiortc's ``JitterBuffer`` works on
parsed ``RtpPacket`` objects with a private ``_data`` field and holds a fixed ring; the
SFU already has each packet's extended sequence number and payload offset, so this keeps
the few lines of logic it needs on those directly, on the event loop, without parsing.

A frame is the run of packets from the one after the previous frame's marker packet up to
the next marker packet, with no sequence gap (the encoder sets the marker on a frame's
last packet, RFC 3550/7741/6184). Packets may arrive out of order or be recovered by a
NACK retransmission a little later, so a gap is waited out for ``max_wait_s``; after that
the frames behind it are dropped and decoding restarts at the next keyframe (a VP8/H.264
decoder fed a frame whose reference was lost shows garbage until then).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EncodedFrame", "FrameAssembler"]


@dataclass(slots=True)
class EncodedFrame:
    """One frame's RTP payloads in order (codec payload descriptors still on them)."""

    payloads: list[bytes]
    timestamp: int
    keyframe: bool


class FrameAssembler:
    """Per-stream reassembly; every method runs on the event loop thread."""

    __slots__ = ("_gap_since", "_next_seq", "_pending", "frames", "gaps", "max_packets",
                 "max_wait_s", "need_keyframe")

    def __init__(self, max_wait_s: float = 0.25, max_packets: int = 512) -> None:
        self.max_wait_s = max_wait_s  # > two NACK rounds (the SFU NACKs every 50 ms)
        self.max_packets = max_packets  # a keyframe at 1.5 Mbps is ~100 packets
        # seq_ext -> (timestamp, marker, payload, keyframe start)
        self._pending: dict[int, tuple[int, int, bytes, bool]] = {}
        self._next_seq: int | None = None
        self._gap_since: float | None = None
        self.need_keyframe = True
        self.frames = 0
        self.gaps = 0

    def reset(self) -> None:
        """Forget everything (new source stream); decoding starts again at a keyframe."""
        self._pending.clear()
        self._next_seq = None
        self._gap_since = None
        self.need_keyframe = True

    def push(self, seq_ext: int, marker: int, timestamp: int, payload: bytes,
             keyframe: bool, now: float) -> list[EncodedFrame] | None:
        """Add one packet; returns the frames it completed, or None.

        ``keyframe`` is the producer's verdict for this packet: True only on the first
        packet of a keyframe, which is where decoding may (re)start.
        """
        if self.need_keyframe:
            if not keyframe:
                return None
            # Start at this keyframe; anything older belongs to frames we cannot decode.
            self._pending.clear()
            self._next_seq = seq_ext
            self._gap_since = None
            self.need_keyframe = False
        elif seq_ext < self._next_seq or seq_ext in self._pending:  # type: ignore[operator]
            return None  # a late duplicate or a retransmission of something used already
        self._pending[seq_ext] = (timestamp, marker, payload, keyframe)
        frames = self._collect()
        if frames:
            self._gap_since = None
        elif self._pending and self._next_seq not in self._pending:
            if self._gap_since is None:
                self._gap_since = now
            elif now - self._gap_since > self.max_wait_s or \
                    len(self._pending) > self.max_packets:
                self.gaps += 1
                self.reset()  # the caller sees need_keyframe and asks the publisher
        elif len(self._pending) > self.max_packets:
            self.gaps += 1  # a frame with no marker at all: never completes
            self.reset()
        return frames or None

    def _collect(self) -> list[EncodedFrame]:
        frames: list[EncodedFrame] = []
        pending = self._pending
        while True:
            start = self._next_seq
            assert start is not None
            seq = start
            while True:
                packet = pending.get(seq)
                if packet is None:
                    return frames
                if packet[1]:  # marker: the frame ends here
                    break
                seq += 1
            run = [pending.pop(s) for s in range(start, seq + 1)]
            self._next_seq = seq + 1
            self.frames += 1
            frames.append(EncodedFrame([p[2] for p in run], run[0][0],
                                       any(p[3] for p in run)))
