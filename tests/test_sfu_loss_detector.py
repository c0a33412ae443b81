"""mediaserver.loss_detector: gaps, retries and the NACK wire format (aiortc parses it)."""

from __future__ import annotations

import tracemalloc

import pytest
from aiortc.rtp import RtcpPacket, RtcpRtpfbPacket

from mediaserver.loss_detector import LossDetector, build_nack, nack_fci
from mediaserver.sequence_validator import SequenceValidator

pytestmark = pytest.mark.unit


def feed(detector: LossDetector, seqs: list[int], now: float = 0.0) -> None:
    """Through the producer's sequence validator, as in the server."""
    sequence = SequenceValidator()
    for seq in seqs:
        seq_ext = sequence.extend(seq, now)
        assert seq_ext is not None
        detector.on_packet(seq_ext, now)


def test_gap_is_nacked_right_away() -> None:
    det = LossDetector()
    for seq in (100, 101, 104, 105):
        det.on_packet(seq, 0.0)
    assert det.missing == [102, 103]
    assert det.due_nacks(0.0, 0.1) == [102, 103]
    assert det.due_nacks(0.0, 0.1) == []  # not again before the retry interval


def test_in_order_stream_never_nacks() -> None:
    det = LossDetector()
    for seq in range(1000):
        det.on_packet(seq, seq / 100)
    assert det.due_nacks(10.0, 0.05) == []


def test_reordered_packet_cancels_nack() -> None:
    det = LossDetector()
    for seq in (1, 2, 4, 3, 5):  # 3 arrives late, before any NACK is due
        det.on_packet(seq, 0.0)
    assert det.due_nacks(0.0, 0.05) == []


def test_retransmission_fills_gap_and_stops_retries() -> None:
    det = LossDetector()
    for seq in (10, 13):
        det.on_packet(seq, 0.0)
    assert det.due_nacks(0.0, 0.05) == [11, 12]
    det.on_packet(11, 0.03)  # retransmitted
    assert det.due_nacks(0.06, 0.05) == [12]
    det.on_packet(12, 0.08)
    assert det.due_nacks(1.0, 0.05) == []
    assert det.missing == []


def test_retry_interval_is_rtt_with_20ms_floor() -> None:
    det = LossDetector()
    det.on_packet(1, 0.0)
    det.on_packet(3, 0.0)
    assert det.due_nacks(0.0, 0.1) == [2]
    assert det.due_nacks(0.099, 0.1) == []
    assert det.due_nacks(0.1, 0.1) == [2]
    # Tiny RTT: the 20 ms floor applies.
    assert det.due_nacks(0.11, 0.001) == []
    assert det.due_nacks(0.12, 0.001) == [2]


def test_gives_up_after_max_tries() -> None:
    det = LossDetector(max_age_s=100.0)
    det.on_packet(1, 0.0)
    det.on_packet(3, 0.0)
    sent = 0
    now = 0.0
    for _ in range(30):
        sent += len(det.due_nacks(now, 0.05))
        now += 0.05
    assert sent == 10
    assert det.missing == []


def test_entries_older_than_max_age_are_forgotten() -> None:
    det = LossDetector(max_age_s=0.5)
    det.on_packet(1, 0.0)
    det.on_packet(5, 0.0)
    assert det.due_nacks(0.0, 0.2) == [2, 3, 4]
    assert det.due_nacks(0.3, 0.2) == [2, 3, 4]
    det.on_packet(8, 0.4)
    assert det.due_nacks(0.45, 0.2) == [6, 7]  # 2..4 not due again before 0.5
    assert det.due_nacks(0.51, 0.2) == []      # 2..4 expired; 6, 7 not due yet
    assert det.missing == [6, 7]


def test_missing_capped_keeping_newest() -> None:
    det = LossDetector(max_missing=5)
    det.on_packet(0, 0.0)
    det.on_packet(4, 0.0)      # 1, 2, 3
    det.on_packet(8, 0.0)      # 5, 6, 7 -> 6 tracked, oldest dropped
    assert det.missing == [2, 3, 5, 6, 7]
    det.on_packet(10000, 0.0)  # huge jump: only the newest 5
    assert det.missing == [9995, 9996, 9997, 9998, 9999]


def test_huge_jump_costs_only_the_cap() -> None:
    det = LossDetector(max_missing=256)
    det.on_packet(0, 0.0)
    tracemalloc.start()
    try:
        det.on_packet(2_000_000, 0.0)  # publisher restart / long outage
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(det.missing) == 256
    assert peak < 200_000  # bytes: no transient million-entry dict


def test_wraparound_at_65535() -> None:
    det = LossDetector()
    feed(det, [65533, 65534, 1, 2])  # 65535 and 0 lost across the wrap
    assert det.due_nacks(0.0, 0.05) == [65535, 0]
    det2 = LossDetector()
    feed(det2, [65534, 0, 65535, 2])
    assert det2.due_nacks(0.0, 0.05) == [1]
    assert det2.missing == [65537]  # extended internally


def test_duplicates_and_old_packets_are_harmless() -> None:
    det = LossDetector()
    for seq in (5, 6, 6, 3, 7):
        det.on_packet(seq, 0.0)
    assert det.due_nacks(0.0, 0.05) == []


@pytest.mark.parametrize("seqs, fci", [
    ([], []),
    ([5], [(5, 0)]),
    ([5, 6, 8], [(5, 0b101)]),
    ([5, 21], [(5, 1 << 15)]),
    ([5, 22], [(5, 0), (22, 0)]),
    ([65534, 65535, 0, 3], [(65534, 0b10011)]),
    ([65535, 20], [(65535, 0), (20, 0)]),
])
def test_nack_fci(seqs: list[int], fci: list[tuple[int, int]]) -> None:
    assert nack_fci(seqs) == fci


def test_aiortc_cannot_encode_across_wrap_but_parses_ours() -> None:
    lost = [65533, 65535, 0, 2, 40, 41]
    with pytest.raises(ValueError):
        bytes(RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=lost))
    data = build_nack(0x11111111, 0x22222222, lost)
    [packet] = RtcpPacket.parse(data)
    assert isinstance(packet, RtcpRtpfbPacket)
    assert (packet.fmt, packet.ssrc, packet.media_ssrc) == (1, 0x11111111, 0x22222222)
    assert [s & 0xFFFF for s in packet.lost] == lost
    assert len(data) == 12 + 4 * 2


def test_due_nacks_feed_build_nack() -> None:
    det = LossDetector()
    feed(det, [65530] + [(65530 + i) & 0xFFFF for i in range(2, 40, 2)])
    lost = det.due_nacks(0.0, 0.05)
    assert len(lost) == 19 and 65535 in lost and 1 in lost
    [packet] = RtcpPacket.parse(build_nack(1, 2, lost))
    assert [s & 0xFFFF for s in packet.lost] == lost
