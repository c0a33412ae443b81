"""Transport-wide sequence numbers on what the SFU sends a peer, and what feedback says of
them.

Every RTP packet to a peer that negotiated transport-cc gets the next transport-wide number
in a header extension, and its send time and size are kept in a ring of the last 8,192, so
feedback (twcc.py) can be turned into (send time, size, arrival time) per packet. The C
fan-out stamps and records in the peer's `_fanout.Target`, which has exactly this class's
interface (`ext_id`, `next_seq`, `stamp`, `sent_us`, `sizes`); `SendHistory` is the pure
Python twin for when the extension is not built, and both paths of one peer always share one
of them, so numbers never repeat or skip.
"""

from __future__ import annotations

import time
from array import array

from .estimator import PacketResult
from .twcc import Feedback

SIZE = 1 << 13
MASK = SIZE - 1
EXTENSION_BYTES = 8  # 0xBEDE, length 1, then id/len, two bytes of number, one of padding
# What a packet costs on the link beyond its RTP bytes (IPv4 20 + UDP 8 + an SRTP tag of
# 10 or 16): the estimate is of the link, and small audio packets pay 30-40% of it.
WIRE_OVERHEAD = 42


class SendHistory:
    __slots__ = ("ext_id", "next_seq", "sent_us", "sizes")

    def __init__(self) -> None:
        self.ext_id = 0  # the peer's id for the extension; 0: not negotiated, nothing stamped
        self.next_seq = 1  # extended (never wraps); packets carry its low 16 bits
        self.sent_us = array("q", bytes(8 * SIZE))
        self.sizes = array("H", bytes(2 * SIZE))

    def stamp(self, packet: bytes) -> bytes:
        """`packet` (12-byte header, no extension) with the next number, recorded as sent
        now; unchanged when transport-cc is off or the packet carries extensions already."""
        ext_id = self.ext_id
        if not ext_id or packet[0] & 0x1F:  # no CSRCs, no extension: ours never have any
            return packet
        seq = self.next_seq
        self.next_seq = seq + 1
        i = seq & MASK
        self.sent_us[i] = time.monotonic_ns() // 1000
        self.sizes[i] = min(len(packet) + EXTENSION_BYTES, 0xFFFF)
        return (bytes((packet[0] | 0x10,)) + packet[1:12]
                + bytes((0xBE, 0xDE, 0, 1, ext_id << 4 | 1, (seq >> 8) & 0xFF, seq & 0xFF, 0))
                + packet[12:])


class FeedbackAdapter:
    """Feedback messages to per-packet results, each packet counted once."""

    __slots__ = ("_history", "_reported", "duplicates", "unknown")

    def __init__(self, history: SendHistory) -> None:
        self._history = history
        self._reported = bytearray(SIZE)  # 0: not yet, 1: reported lost, 2: received
        self.unknown = 0  # reports of packets we did not send (or forgot)
        self.duplicates = 0

    def results(self, fb: Feedback) -> list[PacketResult]:
        history = self._history
        newest = history.next_seq - 1
        if newest < 1:
            self.unknown += len(fb.arrivals)
            return []
        # The extended number of base_seq: the latest one at or before our newest.
        base = newest - ((newest - fb.base_seq) & 0xFFFF)
        sent_us, sizes, reported = history.sent_us, history.sizes, self._reported
        out = []
        for i, arrival in enumerate(fb.arrivals):
            seq = base + i
            if seq > newest or seq < 1 or newest - seq >= SIZE:
                self.unknown += 1
                continue
            k = seq & MASK
            seen = reported[k]
            if seen == 2 or (seen == 1 and arrival is None):
                self.duplicates += 1
                continue
            reported[k] = 1 if arrival is None else 2
            out.append(PacketResult(seq, sent_us[k] / 1e6, sizes[k] + WIRE_OVERHEAD,
                                    None if arrival is None else arrival / 1e6))
        self._forget_older_than(newest)
        return out

    def _forget_older_than(self, newest: int) -> None:
        # The slot a number reuses SIZE packets later must start as "not reported".
        reported = self._reported
        start = (newest + 1) & MASK
        span = min(SIZE // 4, SIZE - 1)
        end = start + span
        if end <= SIZE:
            reported[start:end] = bytes(span)
        else:
            reported[start:] = bytes(SIZE - start)
            reported[:end - SIZE] = bytes(end - SIZE)
