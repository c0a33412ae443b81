"""Detect packets a publisher's stream is missing, so the SFU can NACK them itself.

Receivers NACK the SFU's output streams, but the SFU can only answer from its
own cache; packets lost between publisher and SFU must be requested from the
publisher by the SFU, before the receivers' own NACK timers give up.
"""

from __future__ import annotations

import struct
from itertools import islice

__all__ = ["LossDetector", "build_nack", "nack_fci"]


class _Missing:
    """Retry state of one missing packet (allocated only when loss happens)."""

    __slots__ = ("detected_at", "last_sent", "tries")

    def __init__(self, detected_at: float) -> None:
        self.detected_at = detected_at
        self.last_sent = detected_at
        self.tries = 0


class LossDetector:
    """Tracks gaps in one publisher stream and schedules NACK retries.

    ``on_packet`` is on the hot path: an in-order packet costs a compare and
    an assignment; work (and allocation) only happens when a gap opens or a
    missing packet arrives late / retransmitted. Missing numbers live in a
    dict keyed by extended sequence number; gaps are always opened above the
    highest number seen, so insertion order is ascending order and the oldest
    entries are the first ones, which makes capping cheap.

    Retry policy: first NACK at the first :meth:`due_nacks` call after the gap
    was seen, then every ``max(rtt, min_interval_s)`` (sooner would only
    duplicate a retransmission already in flight), at most ``max_tries``
    times; entries older than ``max_age_s`` are forgotten because the frame
    they belong to is useless by then.
    """

    __slots__ = (
        "_highest",
        "_missing",
        "max_age_s",
        "max_missing",
        "max_tries",
        "min_interval_s",
    )

    def __init__(
        self,
        max_missing: int = 256,
        max_age_s: float = 1.5,
        max_tries: int = 10,
        min_interval_s: float = 0.02,
    ) -> None:
        self.max_missing = max_missing
        self.max_age_s = max_age_s
        self.max_tries = max_tries
        self.min_interval_s = min_interval_s
        self._highest: int | None = None
        self._missing: dict[int, _Missing] = {}

    @property
    def pending(self) -> bool:
        """Whether any gap awaits a NACK: the periodic feedback skips streams without one."""
        return bool(self._missing)

    @property
    def missing(self) -> list[int]:
        """Extended sequence numbers currently considered missing (ascending)."""
        return list(self._missing)

    def on_packet(self, seq_ext: int, now: float) -> None:
        """Account for one received packet (original, reordered or retransmitted)."""
        highest = self._highest
        if highest is None:
            self._highest = seq_ext
            return
        if seq_ext > highest:
            if seq_ext > highest + 1:
                self._open_gap(highest + 1, seq_ext, now)
            self._highest = seq_ext
        elif self._missing:
            self._missing.pop(seq_ext, None)

    def _open_gap(self, first: int, end: int, now: float) -> None:
        missing = self._missing
        cap = self.max_missing
        # A jump larger than the cap (long outage, publisher restart) is only
        # worth NACKing for its most recent packets.
        for seq in range(max(first, end - cap), end):
            missing[seq] = _Missing(now)
        excess = len(missing) - cap
        if excess > 0:
            for seq in list(islice(missing, excess)):
                del missing[seq]

    def due_nacks(self, now: float, rtt_s: float) -> list[int]:
        """16-bit sequence numbers to NACK now, ascending in stream order.

        Call it periodically (e.g. every 10-20 ms) and right after a gap was
        seen. Each returned number counts as one try.
        """
        missing = self._missing
        if not missing:
            return []
        # The epsilon keeps a timer ticking exactly every interval from
        # missing a retry to float rounding (0.12 - 0.1 < 0.02).
        interval = max(rtt_s, self.min_interval_s) - 1e-6
        oldest = now - self.max_age_s
        max_tries = self.max_tries
        due: list[int] = []
        stale: list[int] = []
        for seq, entry in missing.items():
            if entry.detected_at < oldest:
                stale.append(seq)
            elif entry.tries == 0:
                entry.tries = 1
                entry.last_sent = now
                due.append(seq & 0xFFFF)
            elif now - entry.last_sent >= interval:
                if entry.tries >= max_tries:
                    stale.append(seq)
                else:
                    entry.tries += 1
                    entry.last_sent = now
                    due.append(seq & 0xFFFF)
        for seq in stale:
            del missing[seq]
        return due


def nack_fci(seqs: list[int]) -> list[tuple[int, int]]:
    """Generic NACK FCI entries ``(PID, BLP)`` (RFC 4585 section 6.2.1).

    Not delegated to ``aiortc.rtp.RtcpRtpfbPacket``: in aiortc 1.16 its
    encoder computes ``1 << (seq - pid - 1)`` without modular arithmetic, so a
    list crossing the 65535 -> 0 wrap (or out of order) raises ValueError
    ("negative shift count"). Distances here are taken modulo 2**16; input
    should be ascending in stream order (as :meth:`LossDetector.due_nacks`
    returns it); anything else is still encoded correctly, just less
    compactly.
    """
    fci: list[tuple[int, int]] = []
    if not seqs:
        return fci
    pid = seqs[0] & 0xFFFF
    blp = 0
    for seq in seqs[1:]:
        distance = (seq - pid - 1) & 0xFFFF
        if distance < 16:
            blp |= 1 << distance
        else:
            fci.append((pid, blp))
            pid = seq & 0xFFFF
            blp = 0
    fci.append((pid, blp))
    return fci


_RTCP_RTPFB_HEADER = struct.Struct("!BBHII")
_FCI = struct.Struct("!HH")


def build_nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """A complete RTCP Generic NACK packet (PT=205, FMT=1) for ``seqs``."""
    fci = nack_fci(seqs)
    header = _RTCP_RTPFB_HEADER.pack(0x81, 205, 2 + len(fci), sender_ssrc, media_ssrc)
    return header + b"".join(_FCI.pack(pid, blp) for pid, blp in fci)
