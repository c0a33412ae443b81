"""Sequence numbers of one incoming RTP stream: extended past the 16-bit wrap, and
validated in the spirit of RFC 3550 A.1.

Why validate: everything downstream (each receiver's rewritten numbers, loss detection,
the NACK history, receiver reports) follows the highest number seen, and so does each
receiver's jitter buffer. Without a check, one packet numbered far ahead of the stream
(a publisher's bug, a corrupted header that still authenticated, or a sender that restarts
its numbering mid-stream) would move that highest number: every later real packet would
look old, receivers would drop them, and the stream would freeze until the numbers caught
up (a jump of 1,000 is 30 s of a quiet 30 fps stream).

So a jump is held on probation: the packet is discarded, and only a second packet
continuing from it (the sender really did jump) is followed. A jump is a packet more than
MAX_DROPOUT ahead (RFC 3550), or more packets ahead than the stream could have sent
since the last one arrived: MAX_BURST_GAP at once, plus MAX_PACKET_RATE per second of
silence, so a real outage of any length is followed at once. After a jump beyond
MAX_DROPOUT the new numbering is shifted to continue right after the old one, so
receivers, the loss detector and the history see one continuous stream.
"""

from __future__ import annotations

__all__ = ["MAX_BURST_GAP", "MAX_DROPOUT", "MAX_MISORDER", "MAX_PACKET_RATE",
           "SequenceValidator"]

# RFC 3550 A.1's MAX_DROPOUT: a packet up to this far ahead is the stream going on (with
# a gap that the loss detector NACKs).
MAX_DROPOUT = 3000
# How far behind a packet may be and still count as late, not as a jump. RFC 3550 uses 100;
# here late packets include retransmissions answered after several round trips, and the
# consumers already drop what is further behind than this.
MAX_MISORDER = 3000
# Packets that may be missing between two arrivals with no time between them (a lost
# piece of a keyframe burst), and how many more per second without packets (a 10 Mbit/s
# stream of 1,200-byte packets sends about 1,000 a second).
MAX_BURST_GAP = 100
MAX_PACKET_RATE = 1000.0


class SequenceValidator:
    """Extended sequence numbers (``cycles * 65536 + seq``, shifted after a restart)."""

    __slots__ = ("_at", "_first", "_highest", "_probation", "_shift", "discarded", "restarts")

    def __init__(self) -> None:
        self._highest: int | None = None
        self._first = 0  # nothing older than the first packet is part of the stream
        self._at = 0.0  # when the highest arrived
        self._shift = 0  # added to incoming numbers since the last restart
        self._probation = -1  # the number that would confirm a jump
        self.discarded = 0
        self.restarts = 0

    @property
    def highest(self) -> int | None:
        """Highest extended number accepted so far (None before the first packet)."""
        return self._highest

    @property
    def highest_raw(self) -> int | None:
        """The highest number as the sender wrote it (to place RTX original numbers)."""
        highest = self._highest
        return None if highest is None else (highest - self._shift) & 0xFFFF

    def extend(self, seq: int, now: float) -> int | None:
        """The extended number of ``seq`` arriving at ``now`` (monotonic seconds), or None
        to discard it: a jump on probation, or older than the stream's first packet.

        Hot path: one call per received packet.
        """
        highest = self._highest
        if highest is None:
            self._highest = self._first = seq
            self._at = now
            return seq
        delta = (seq + self._shift - highest) & 0xFFFF
        if delta < MAX_DROPOUT:
            if not delta:
                return highest  # the same again
            if delta <= MAX_BURST_GAP or seq == self._probation \
                    or delta <= MAX_BURST_GAP + (now - self._at) * MAX_PACKET_RATE:
                highest += delta
                self._highest, self._at, self._probation = highest, now, -1
                return highest
        elif delta > 0x10000 - MAX_MISORDER:  # late or reordered
            extended = highest + delta - 0x10000
            if extended >= self._first:
                return extended
            # Older than the stream's first packet: nothing a receiver could use, and one
            # far behind what it has makes some jitter buffers (aiortc's) start over.
            self.discarded += 1
            return None
        elif seq == self._probation:  # two in a row: the sender restarted its numbering
            highest += 1
            self._shift = (highest - seq) & 0xFFFF
            self._highest, self._at, self._probation = highest, now, -1
            self.restarts += 1
            return highest
        self._probation = (seq + 1) & 0xFFFF
        self.discarded += 1
        return None
