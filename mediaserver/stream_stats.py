"""RTCP statistics for the SFU's incoming and outgoing streams (RFC 3550).

As an RTP endpoint towards each publisher the SFU must send receiver reports
(publishers adapt their bitrate to fraction lost and jitter), and towards each
receiver it must send sender reports (receivers need them for lip sync and RTT).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

__all__ = ["ReceiveStats", "ReportBlock", "SendStats"]

_LOST_MAX = 0x7FFFFF
_LOST_MIN = -0x800000
_BLOCK = struct.Struct("!IIIIII")


class ReportBlock(NamedTuple):
    """One RR/SR report block, a drop-in for ``aiortc.rtp.RtcpReceiverInfo``.

    Same field names and the same ``bytes()`` wire format (RFC 3550 6.4.1), so
    it can go straight into ``RtcpRrPacket(reports=[...])`` or be converted
    with ``RtcpReceiverInfo(**block._asdict())``, without this module
    importing aiortc internals.
    """

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    def __bytes__(self) -> bytes:
        return _BLOCK.pack(
            self.ssrc,
            ((self.fraction_lost & 0xFF) << 24) | (self.packets_lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


class ReceiveStats:
    """Loss and jitter of one publisher stream, per RFC 3550 appendix A.3 / A.8.

    HOT PATH: :meth:`on_packet` runs for every received packet; it only does
    integer/float arithmetic on attributes.

    Sequence numbers are the caller's extended ones (``SequenceValidator.extend``),
    so RFC 3550's cycle counting is not repeated here. Duplicates count as
    received, exactly as in A.3 (cumulative loss may therefore go negative).
    Jitter (A.8) is only updated by packets that advance the highest sequence
    number, like libwebrtc does: reordered and retransmitted packets were not
    sent at their nominal time and would inflate it.
    """

    __slots__ = (
        "_base_seq",
        "_expected_prior",
        "_jitter",
        "_last_arrival",
        "_last_ts",
        "_max_seq",
        "_received",
        "_received_prior",
        "clock_rate",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._base_seq: int | None = None
        self._max_seq = 0
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_arrival = 0.0
        self._last_ts = 0

    def on_packet(self, seq_ext: int, rtp_ts: int, arrival_s: float) -> None:
        """Account for one received RTP packet (``arrival_s`` in seconds, any epoch)."""
        self._received += 1
        if self._base_seq is None:
            self._base_seq = seq_ext
            self._max_seq = seq_ext
            self._last_arrival = arrival_s
            self._last_ts = rtp_ts
            return
        if seq_ext > self._max_seq:
            self._max_seq = seq_ext
            # D(i-1, i) = (Rj - Ri) - (Sj - Si) in timestamp units; the
            # timestamp difference is taken modulo 2**32 (signed) so a wrap
            # of the publisher's random-offset clock is harmless.
            ts_delta = ((rtp_ts - self._last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            d = (arrival_s - self._last_arrival) * self.clock_rate - ts_delta
            if d < 0:
                d = -d
            self._jitter += (d - self._jitter) / 16.0
            self._last_arrival = arrival_s
            self._last_ts = rtp_ts
        elif seq_ext < self._base_seq:
            # Reordered ahead of the first packet: the stream started earlier.
            self._base_seq = seq_ext

    @property
    def jitter(self) -> float:
        """Interarrival jitter estimate in RTP timestamp units (unrounded)."""
        return self._jitter

    @property
    def packets_received(self) -> int:
        """All packets received, duplicates included."""
        return self._received

    @property
    def expected(self) -> int:
        """Packets expected so far: extended highest - base + 1."""
        if self._base_seq is None:
            return 0
        return self._max_seq - self._base_seq + 1

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received (negative with duplicates), unclamped."""
        return self.expected - self._received

    def report_block(self, ssrc: int, lsr: int, dlsr: int) -> ReportBlock:
        """Build the report block for the next RR and start a new loss interval.

        Side effect: ``fraction_lost`` is defined over the interval since the
        previous report, so calling this marks the start of the next one; call
        it exactly once per report sent. ``lsr``/``dlsr`` are passed through
        (they come from the last SR received, which this class does not see).
        """
        expected = self.expected
        received = self._received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = received
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min((lost_interval << 8) // expected_interval, 255)
        lost = expected - received
        lost = _LOST_MAX if lost > _LOST_MAX else _LOST_MIN if lost < _LOST_MIN else lost
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=self._max_seq & 0xFFFFFFFF,
            jitter=int(self._jitter),
            lsr=lsr,
            dlsr=dlsr,
        )


class SendStats:
    """Counters of one outgoing stream for its RTCP sender reports.

    HOT PATH: :meth:`on_packet` runs for every forwarded packet. Octets are
    payload octets only, as the SR "sender's octet count" requires (RFC 3550
    section 6.4.1: no header, no padding).
    """

    __slots__ = ("clock_rate", "last_rtp_ts", "last_sent_at", "octets_sent", "packets_sent")

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_rtp_ts: int | None = None
        self.last_sent_at = 0.0

    def on_packet(self, payload_len: int, rtp_ts: int, sent_at: float) -> None:
        """Account for one packet sent (retransmissions should not be counted)."""
        self.packets_sent += 1
        self.octets_sent += payload_len
        self.last_rtp_ts = rtp_ts
        self.last_sent_at = sent_at

    def rtp_timestamp_at(self, now: float) -> int | None:
        """RTP timestamp corresponding to wall time ``now``, for the SR.

        An SR pairs an NTP time with the RTP timestamp of that same instant,
        which is usually between packets, so it is extrapolated from the last
        packet sent at the nominal clock rate. None before anything was sent.
        """
        if self.last_rtp_ts is None:
            return None
        return (self.last_rtp_ts + round((now - self.last_sent_at) * self.clock_rate)) & 0xFFFFFFFF
