"""Short history of packets SENT on one outgoing stream, to answer receivers' NACKs.

The SFU rewrites sequence numbers per receiver, so NACKs from a receiver name
*output* numbers and must be answered from what was actually sent to that
receiver, not from the publisher's stream.
"""

from __future__ import annotations

__all__ = ["PacketCache"]


class PacketCache:
    """Fixed-size ring buffer indexed by ``seq & mask``.

    A ring keyed by the low bits of the sequence number needs no hashing, no
    eviction bookkeeping and no allocation per :meth:`put` (the three lists
    are preallocated; a put only stores references). The size must be a power
    of two that divides 65536, so ``seq & mask`` stays consistent across the
    16-bit wrap. Each slot remembers its full 16-bit number, so a lookup for a
    number that has since been overwritten returns None instead of a wrong
    packet. 512 packets is about 1-2 s of 1-2 Mbit/s video, longer than any
    useful retransmission.
    """

    __slots__ = ("_mask", "_packets", "_sent_at", "_seqs")

    def __init__(self, size: int = 512) -> None:
        if size <= 0 or size & (size - 1) or size > 65536:
            raise ValueError("PacketCache size must be a power of two <= 65536")
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._packets: list[bytes | None] = [None] * size
        self._sent_at: list[float] = [0.0] * size

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._mask + 1

    def put(self, seq16: int, packet: bytes, sent_at: float) -> None:
        """Remember a packet as sent (HOT PATH: once per forwarded packet)."""
        i = seq16 & self._mask
        self._seqs[i] = seq16
        self._packets[i] = packet
        self._sent_at[i] = sent_at

    def get(self, seq16: int) -> bytes | None:
        """The packet sent with this number, if still held.

        Numbers are reduced to 16 bits first: aiortc's NACK parser
        (``RtcpRtpfbPacket.parse``) returns PID + bit offset without wrapping,
        so a NACK just below the 65535 -> 0 wrap yields 65536, 65537, ...
        """
        seq16 &= 0xFFFF
        i = seq16 & self._mask
        if self._seqs[i] == seq16:
            return self._packets[i]
        return None

    def sent_at(self, seq16: int) -> float | None:
        """When the packet was (last) sent, to skip NACKs that arrive within an RTT."""
        seq16 &= 0xFFFF
        i = seq16 & self._mask
        if self._seqs[i] == seq16:
            return self._sent_at[i]
        return None

    def mark_resent(self, seq16: int, now: float) -> None:
        """Record a retransmission so duplicate NACKs in the same RTT are ignored."""
        seq16 &= 0xFFFF
        i = seq16 & self._mask
        if self._seqs[i] == seq16:
            self._sent_at[i] = now

    def clear(self) -> None:
        """Forget everything (e.g. after the outgoing stream was restarted)."""
        size = self._mask + 1
        self._seqs[:] = [-1] * size
        self._packets[:] = [None] * size
        self._sent_at[:] = [0.0] * size
