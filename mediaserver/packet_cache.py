"""Short history of packets SENT on one outgoing stream, to answer receivers' NACKs.

The SFU rewrites sequence numbers per receiver, so NACKs from a receiver name
*output* numbers and must be answered from what was actually sent to that
receiver, not from the publisher's stream.
"""

from __future__ import annotations

__all__ = ["PacketCache", "ResendLog"]


def _check_size(size: int) -> None:
    if size <= 0 or size & (size - 1) or size > 65536:
        raise ValueError("size must be a power of two <= 65536")


class PacketCache:
    """Fixed-size ring buffer indexed by ``seq & mask``.

    A ring keyed by the low bits of the sequence number needs no hashing, no
    eviction bookkeeping and no allocation per :meth:`put` (the lists are
    preallocated; a put only stores references). The size must be a power
    of two that divides 65536, so ``seq & mask`` stays consistent across the
    16-bit wrap. Each slot remembers its full 16-bit number, so a lookup for a
    number that has since been overwritten returns None instead of a wrong
    packet. 512 packets is about 1-2 s of 1-2 Mbit/s video, longer than any
    useful retransmission.
    """

    __slots__ = ("_mask", "_packets", "_seqs")

    def __init__(self, size: int = 512) -> None:
        _check_size(size)
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._packets: list[bytes | None] = [None] * size

    @property
    def size(self) -> int:
        """Number of slots."""
        return self._mask + 1

    def put(self, seq16: int, packet: bytes) -> None:
        """Remember a packet as sent (HOT PATH: once per forwarded packet)."""
        i = seq16 & self._mask
        self._seqs[i] = seq16
        self._packets[i] = packet

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

    def clear(self) -> None:
        """Forget everything (e.g. after the outgoing stream was restarted)."""
        size = self._mask + 1
        self._seqs[:] = [-1] * size
        self._packets[:] = [None] * size


class ResendLog:
    """When each recently resent packet (by output number) was last resent.

    A receiver repeats its NACK for a packet until the packet arrives, and a NACK may list
    the whole history: answering every repetition would resend the same packets again and
    again (an amplifier, too). Like mediasoup, a packet is resent at most once per round
    trip. Kept apart from the packets themselves, which the native fan-out does not store.
    """

    __slots__ = ("_mask", "_seqs", "_times")

    def __init__(self, size: int = 256) -> None:
        _check_size(size)
        self._mask = size - 1
        self._seqs: list[int] = [-1] * size
        self._times: list[float] = [0.0] * size

    def allow(self, seq16: int, now: float, interval: float) -> bool:
        """True (and remembered) unless this packet was resent less than ``interval`` ago."""
        seq16 &= 0xFFFF
        i = seq16 & self._mask
        if self._seqs[i] == seq16 and now - self._times[i] < interval:
            return False
        self._seqs[i] = seq16
        self._times[i] = now
        return True
