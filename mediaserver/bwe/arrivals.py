"""Transport-wide feedback for what a publisher sends us (its uplink).

A browser that negotiated transport-cc numbers every packet it sends and runs its own
estimator on the feedback: without it, its estimate of its uplink (a shopper on a weak phone
connection, a store tablet on busy Wi-Fi) cannot follow the link. So the SFU records when
each numbered packet arrived (media, retransmissions and padding probes alike) and, every
50 ms, reports them, as libwebrtc's receive side does.

`twcc_number` reads the number from a packet's header extension on the receive path: a
handful of byte reads, no objects. The rest runs off the packet path.
"""

from __future__ import annotations

from array import array

from .twcc import build_feedback

SIZE = 1 << 12
MASK = SIZE - 1
MAX_PER_FEEDBACK = 1000
NOT_RECEIVED = -1


def twcc_number(data: bytes, ext_id: int) -> int:
    """The transport-wide sequence number in an RTP packet's header extension, or -1.

    One-byte (0xBEDE) and two-byte (0x100x) extension headers (RFC 8285); bounds-checked, so
    garbage gives -1, never an exception.
    """
    if not data[0] & 0x10:
        return -1
    pos = 12 + ((data[0] & 0x0F) << 2)
    n = len(data)
    if pos + 4 > n:
        return -1
    profile = (data[pos] << 8) | data[pos + 1]
    end = pos + 4 + (((data[pos + 2] << 8) | data[pos + 3]) << 2)
    if end > n:
        return -1
    pos += 4
    if profile == 0xBEDE:
        while pos < end:
            head = data[pos]
            if head == 0:  # padding
                pos += 1
                continue
            ident, length = head >> 4, (head & 0x0F) + 1
            if ident == 15:
                return -1
            if ident == ext_id:
                return (data[pos + 1] << 8) | data[pos + 2] if length == 2 and \
                    pos + 3 <= end else -1
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos + 2 <= end:
            ident, length = data[pos], data[pos + 1]
            if ident == 0:
                pos += 1
                continue
            if ident == ext_id:
                return (data[pos + 2] << 8) | data[pos + 3] if length == 2 and \
                    pos + 4 <= end else -1
            pos += 2 + length
    return -1


class ArrivalRecorder:
    """Arrival times by transport-wide number, turned into feedback messages."""

    __slots__ = ("_arrival_us", "_count", "_highest", "_reported", "ext_id", "feedbacks",
                 "media_ssrc", "reported_lost", "reported_received")

    def __init__(self, ext_id: int, media_ssrc: int = 0) -> None:
        self.ext_id = ext_id
        self.media_ssrc = media_ssrc
        self._arrival_us = array("q", [NOT_RECEIVED]) * SIZE
        self._highest = -1  # extended number of the newest packet
        self._reported = -1  # everything up to this one was in a feedback already
        self._count = 0
        self.feedbacks = 0
        self.reported_received = 0
        self.reported_lost = 0

    def record(self, seq16: int, now_us: int) -> None:
        """One packet arrived (receive path)."""
        highest = self._highest
        if highest < 0:
            seq = seq16
            self._reported = seq - 1
        else:
            seq = highest + ((seq16 - highest + 0x8000) & 0xFFFF) - 0x8000
            if seq <= self._reported or highest - seq >= SIZE:
                return  # already reported (as lost), or far too old
        if seq > highest:
            if highest >= 0 and seq - highest >= SIZE:  # a jump: start over from here
                self._reported = seq - 1
            for gap in range(max(highest + 1, seq - SIZE + 1), seq):
                self._arrival_us[gap & MASK] = NOT_RECEIVED
            self._highest = seq
        self._arrival_us[seq & MASK] = now_us

    def feedback(self, sender_ssrc: int) -> list[bytes]:
        """Feedback for everything since the last one (run every 50 ms or so)."""
        out = []
        start, end = self._reported + 1, self._highest
        arrivals = self._arrival_us
        while start <= end:
            while start <= end and arrivals[start & MASK] == NOT_RECEIVED:
                start += 1  # a feedback starts at a received packet
            if start > end:
                break
            stop = min(end, start + MAX_PER_FEEDBACK - 1)
            times: list[int | None] = []
            first = arrivals[start & MASK]
            for seq in range(start, stop + 1):
                at = arrivals[seq & MASK]
                if at != NOT_RECEIVED and abs(at - first) > 8_000_000:
                    stop = seq - 1  # deltas only reach 8 s: the rest goes in the next one
                    break
                times.append(None if at == NOT_RECEIVED else at)
            while times and times[-1] is None:
                times.pop()
                stop -= 1
            lost = times.count(None)
            self.reported_lost += lost
            self.reported_received += len(times) - lost
            out.append(build_feedback(sender_ssrc, self.media_ssrc, start, times,
                                      self._count))
            self._count += 1
            self.feedbacks += 1
            start = stop + 1
        self._reported = max(self._reported, end)
        return out

    def describe(self) -> dict[str, int]:
        return {"feedbacks": self.feedbacks, "reported_received": self.reported_received,
                "reported_lost": self.reported_lost}
