"""mediaserver.packet_cache: NACK history of sent packets, and the log that resends each
packet at most once per round trip."""

from __future__ import annotations

import tracemalloc

import pytest
from aiortc.rtp import RtcpPacket, RtcpRtpfbPacket

from mediaserver.packet_cache import PacketCache, ResendLog
from mediaserver.rtp_header import build_packet

pytestmark = pytest.mark.unit


def packet(seq: int) -> bytes:
    return build_packet(96, 0, seq, seq * 3000 & 0xFFFFFFFF, 1, b"x" * 100)


def test_get_returns_what_was_put() -> None:
    cache = PacketCache(8)
    sent = {seq: packet(seq) for seq in range(10, 18)}
    for seq, data in sent.items():
        cache.put(seq, data)
    for seq, data in sent.items():
        assert cache.get(seq) is data  # the very object: no copies
    assert cache.get(18) is None
    assert cache.get(9) is None
    assert cache.size == 8


def test_overwritten_slot_does_not_answer_for_older_seq() -> None:
    cache = PacketCache(8)
    cache.put(3, b"old")
    cache.put(11, b"new")   # same slot (11 & 7 == 3)
    assert cache.get(3) is None
    assert cache.get(11) == b"new"
    cache.put(65535 - 4, b"a")  # slot 3 again, far away
    assert cache.get(11) is None


def test_wraparound_at_65535() -> None:
    cache = PacketCache(16)
    seqs = [(65530 + i) & 0xFFFF for i in range(16)]
    for s in seqs:
        cache.put(s, packet(s))
    assert [cache.get(s) is not None for s in seqs] == [True] * 16
    assert cache.get(0) == packet(0)
    cache.put(10, b"later")  # evicts 65530 (same slot with size 16)
    assert cache.get(65530) is None
    assert cache.get(65531) is not None


def test_nack_parsed_by_aiortc_across_wrap_finds_packets() -> None:
    cache = PacketCache(16)
    for seq in (65534, 65535, 0, 1):
        cache.put(seq, packet(seq))
    # A receiver NACKs 65534 with BLP bits for 65535, 0 and 1.
    nack = bytes(RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[65534, 65535]))
    nack = nack[:-2] + (0b111).to_bytes(2, "big")
    [parsed] = RtcpPacket.parse(nack)
    assert parsed.lost == [65534, 65535, 65536, 65537]  # aiortc does not wrap
    assert [cache.get(seq) for seq in parsed.lost] == [packet(s) for s in (65534, 65535, 0, 1)]


def test_clear() -> None:
    cache = PacketCache()
    cache.put(5, b"p")
    cache.clear()
    assert cache.get(5) is None
    assert cache.size == 512


def test_resend_log_allows_one_resend_per_interval() -> None:
    log = ResendLog(8)
    assert log.allow(100, 1.0, 0.05)
    assert not log.allow(100, 1.04, 0.05)  # the receiver asked again within the RTT
    assert log.allow(101, 1.04, 0.05)  # another packet
    assert log.allow(100, 1.05, 0.05)  # a round trip later: lost again, resend
    assert log.allow(108, 1.06, 0.05)  # same slot as 100, another packet: no confusion
    assert log.allow(100, 1.06, 0.05)
    # aiortc's NACK parser does not wrap: 65536 is 0.
    assert log.allow(0, 2.0, 0.05) and not log.allow(65536, 2.01, 0.05)


@pytest.mark.parametrize("size", [0, 3, 100, 65536 * 2, -4])
def test_size_must_be_power_of_two(size: int) -> None:
    with pytest.raises(ValueError):
        PacketCache(size)
    with pytest.raises(ValueError):
        ResendLog(size)


def test_put_allocates_nothing_once_warm() -> None:
    cache = PacketCache(64)
    packets = [packet(s) for s in range(64)]
    for s in range(64):
        cache.put(s, packets[s])
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(50):
            for s in range(64):
                cache.put(s, packets[s])
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = [d for d in after.compare_to(before, "filename")
             if d.size_diff > 0 and "packet_cache" in str(d.traceback)]
    assert grown == []


def test_has_slots() -> None:
    assert not hasattr(PacketCache(), "__dict__")
    assert not hasattr(ResendLog(), "__dict__")
