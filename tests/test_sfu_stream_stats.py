"""mediaserver.stream_stats against a hand-computed RFC 3550 example and aiortc's RTCP codec."""

from __future__ import annotations

import random

import pytest
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket

from mediaserver.sequence_validator import SequenceValidator
from mediaserver.stream_stats import ReceiveStats, ReportBlock, SendStats

pytestmark = pytest.mark.unit


def test_hand_computed_example() -> None:
    stats = ReceiveStats(90000)
    # seq, rtp ts, arrival (s). 102 is lost.
    stats.on_packet(100, 0, 0.000)
    stats.on_packet(101, 3000, 0.040)  # D = 3600 - 3000 = 600   -> J = 37.5
    stats.on_packet(103, 9000, 0.100)  # D = |5400 - 6000| = 600 -> J = 72.65625
    stats.on_packet(104, 12000, 0.100 + 1 / 30)  # D = 0         -> J = 68.115234375
    assert stats.jitter == pytest.approx(68.115234375)
    block = stats.report_block(0xABCD, 0x1111, 0x2222)
    # expected = 104 - 100 + 1 = 5, received 4: fraction = (1 << 8) // 5 = 51.
    assert block == ReportBlock(ssrc=0xABCD, fraction_lost=51, packets_lost=1,
                                highest_sequence=104, jitter=68, lsr=0x1111, dlsr=0x2222)

    # Second interval: 105 and 108 arrive, 106 and 107 lost.
    stats.on_packet(105, 15000, 0.1 + 2 / 30)
    stats.on_packet(108, 24000, 0.1 + 5 / 30)
    block = stats.report_block(0xABCD, 0, 0)
    # Interval: expected 4 (105..108), received 2 -> 2 * 256 // 4 = 128; cumulative 3.
    assert (block.fraction_lost, block.packets_lost, block.highest_sequence) == (128, 3, 108)

    # Third interval without packets: nothing expected, nothing lost.
    block = stats.report_block(0xABCD, 0, 0)
    assert (block.fraction_lost, block.packets_lost) == (0, 3)


def test_late_packet_reduces_loss_but_not_jitter() -> None:
    stats = ReceiveStats(48000)
    stats.on_packet(1, 0, 0.0)
    stats.on_packet(3, 1920, 0.04)
    jitter = stats.jitter
    stats.on_packet(2, 960, 0.5)  # very late: would be a huge D if it counted
    assert stats.jitter == jitter
    block = stats.report_block(1, 0, 0)
    assert (block.fraction_lost, block.packets_lost) == (0, 0)


def test_duplicates_make_loss_negative_and_fraction_zero() -> None:
    stats = ReceiveStats(90000)
    for seq in (1, 2, 2, 3, 3):
        stats.on_packet(seq, seq * 3000, seq / 30)
    block = stats.report_block(1, 0, 0)
    assert (block.fraction_lost, block.packets_lost) == (0, -2)
    info = RtcpReceiverInfo.parse(bytes(block))
    assert info.packets_lost == -2


def test_jitter_matches_rfc_reference_and_survives_timestamp_wrap() -> None:
    rng = random.Random(9)
    clock = 90000
    start_ts = (1 << 32) - 30000  # wraps after 10 frames

    stats = ReceiveStats(clock)
    reference = 0.0
    last_transit = None
    for i in range(200):
        ts_unwrapped = start_ts + i * 3000
        arrival = i / 30 + rng.uniform(0, 0.02)
        stats.on_packet(1000 + i, ts_unwrapped & 0xFFFFFFFF, arrival)
        transit = arrival * clock - ts_unwrapped
        if last_transit is not None:
            reference += (abs(transit - last_transit) - reference) / 16
        last_transit = transit
    assert stats.jitter == pytest.approx(reference, rel=1e-9)
    assert 100 < stats.jitter < 1000  # ~ mean |D| of uniform 0-20 ms noise at 90 kHz
    assert stats.report_block(1, 0, 0).jitter == int(reference)


def test_highest_sequence_counts_cycles() -> None:
    stats = ReceiveStats(90000)
    sequence = SequenceValidator()
    for seq in (65534, 65535, 0, 1):
        stats.on_packet(sequence.extend(seq, 0.0), 0, 0.0)  # type: ignore[arg-type]
    block = stats.report_block(1, 0, 0)
    assert block.highest_sequence == (1 << 16) | 1
    assert block.packets_lost == 0


def test_cumulative_loss_is_clamped_to_24_bits() -> None:
    stats = ReceiveStats(90000)
    stats.on_packet(0, 0, 0.0)
    stats.on_packet(1 << 24, 0, 1.0)
    block = stats.report_block(1, 0, 0)
    assert block.packets_lost == 0x7FFFFF
    assert block.fraction_lost == 255
    assert RtcpReceiverInfo.parse(bytes(block)).packets_lost == 0x7FFFFF


def test_report_block_is_drop_in_for_aiortc() -> None:
    stats = ReceiveStats(90000)
    for seq in (10, 11, 13):
        stats.on_packet(seq, seq * 3000, seq / 30 + (0.005 if seq == 11 else 0))
    block = stats.report_block(0xDEADBEEF, 0x12345678, 65536)
    info = RtcpReceiverInfo(**block._asdict())
    assert bytes(block) == bytes(info)
    data = bytes(RtcpRrPacket(ssrc=42, reports=[block]))  # accepted as-is
    [rr] = RtcpPacket.parse(data)
    assert isinstance(rr, RtcpRrPacket)
    assert rr.reports[0] == info


def test_report_before_any_packet() -> None:
    block = ReceiveStats(90000).report_block(7, 0, 0)
    assert block == ReportBlock(7, 0, 0, 0, 0, 0, 0)


def test_send_stats() -> None:
    stats = SendStats(90000)
    assert stats.rtp_timestamp_at(1.0) is None
    stats.on_packet(1000, 0xFFFFFF00, 10.0)
    stats.on_packet(500, 0xFFFFFF00, 10.001)
    assert (stats.packets_sent, stats.octets_sent) == (2, 1500)
    assert stats.rtp_timestamp_at(10.001) == 0xFFFFFF00
    assert stats.rtp_timestamp_at(10.011) == (0xFFFFFF00 + 900) & 0xFFFFFFFF  # wrapped
    assert not hasattr(stats, "__dict__") and not hasattr(ReceiveStats(1), "__dict__")
