"""mediaserver/sequence_validator.py: extension across the wrap, late packets, and
probation for jumps (one wild packet is dropped; a real jump or outage is followed)."""

from __future__ import annotations

import pytest

from mediaserver.sequence_validator import (
    MAX_BURST_GAP,
    MAX_DROPOUT,
    MAX_MISORDER,
    MAX_PACKET_RATE,
    SequenceValidator,
)

pytestmark = pytest.mark.unit

TICK = 0.005  # 200 packets a second


def feed(validator: SequenceValidator, seqs: list[int], start: float = 0.0
         ) -> list[int | None]:
    return [validator.extend(s, start + i * TICK) for i, s in enumerate(seqs)]


def test_in_order_with_gaps_and_the_wrap() -> None:
    v = SequenceValidator()
    assert feed(v, [65530, 65531, 65533, 65535, 0, 1, 5]) == \
        [65530, 65531, 65533, 65535, 65536, 65537, 65541]
    assert v.highest == 65541 and v.highest_raw == 5
    # A burst that lost MAX_BURST_GAP - 1 packets, arriving right after the last one.
    assert v.extend(5 + MAX_BURST_GAP, 0.03) == 65541 + MAX_BURST_GAP
    assert v.discarded == 0


def test_late_duplicate_and_reordered_packets_keep_their_numbers() -> None:
    v = SequenceValidator()
    feed(v, [5000, 5001, 5003])
    assert v.extend(4999, 0.02) is None  # before the stream's first packet: not of it
    v = SequenceValidator()
    feed(v, [100, 101, 103])
    assert v.extend(102, 0.02) == 102  # reordered
    assert v.extend(103, 0.02) == 103  # duplicate
    assert v.highest == 103
    feed(v, list(range(104, 104 + MAX_MISORDER)), 0.03)
    highest = 103 + MAX_MISORDER
    late = highest - (MAX_MISORDER - 1)  # a retransmission answered much later
    assert v.extend(late & 0xFFFF, 20.0) == late
    assert v.highest == highest and v.discarded == 0


def test_an_outage_of_any_length_is_followed_at_once() -> None:
    v = SequenceValidator()
    feed(v, [1000, 1001])
    # 2 s without packets at 300 a second: 600 missing, well within what 2 s allows.
    assert v.extend(1601, TICK + 2.0) == 1601
    assert v.discarded == 0
    gap = MAX_DROPOUT - 1  # the longest gap that is not a restart
    seconds = (gap - MAX_BURST_GAP) / MAX_PACKET_RATE + 0.01
    assert v.extend(1601 + gap, TICK + 2.0 + seconds) == 1601 + gap


def test_one_wild_packet_is_discarded_and_the_stream_goes_on() -> None:
    v = SequenceValidator()
    feed(v, list(range(1000, 1010)))
    t = 10 * TICK
    assert v.extend(40000, t) is None  # beyond MAX_DROPOUT
    assert v.extend(1010 + 1024, t) is None  # one flipped bit: 1,024 ahead with no time
    assert v.extend(1010, t + TICK) == 1010  # nothing moved
    assert [v.extend(s, t + TICK) for s in (1011, 1012)] == [1011, 1012]
    assert v.extend(40001, t + 2 * TICK) is None  # after real packets: not a confirmation
    assert v.discarded == 3 and v.restarts == 0 and v.highest == 1012


def test_a_jump_confirmed_by_the_next_packet_is_followed() -> None:
    v = SequenceValidator()
    feed(v, list(range(500, 510)))
    t = 10 * TICK
    assert v.extend(509 + 1000, t) is None  # 1,000 ahead at once: on probation
    assert v.extend(509 + 1001, t + 0.001) == 509 + 1001  # its successor: the stream jumped
    assert v.extend(509 + 1002, t + 0.002) == 509 + 1002
    assert v.restarts == 0 and v.discarded == 1


def test_restarted_numbering_continues_after_the_old_one() -> None:
    v = SequenceValidator()
    feed(v, list(range(65000, 65100)))
    t = 100 * TICK
    assert v.extend(20000, t) is None  # first of the new numbering: on probation
    assert v.extend(20001, t + TICK) == 65100  # confirmed: continues after the old stream
    assert [v.extend(s, t + 2 * TICK) for s in (20002, 20004, 20003)] == [65101, 65103, 65102]
    assert v.highest_raw == 20004
    # The new numbering wraps like any other.
    steps = range(1, 50000, 2000)
    out = [v.extend((20004 + i) & 0xFFFF, t + 3 * TICK + i) for i in steps]
    assert out == [65103 + i for i in steps]
    assert v.restarts == 1 and v.discarded == 1


def test_a_jump_exactly_at_the_limits() -> None:
    v = SequenceValidator()
    v.extend(10000, 0.0)
    assert v.extend(10000 + MAX_DROPOUT, 100.0) is None  # MAX_DROPOUT ahead: always a jump
    v = SequenceValidator()
    v.extend(10000, 0.0)
    assert v.extend(10000 - MAX_MISORDER, 0.0) is None  # MAX_MISORDER behind: a jump
    v = SequenceValidator()
    v.extend(10000, 0.0)
    assert v.extend(10000 + MAX_BURST_GAP + 1, 0.0) is None  # just over the burst allowance
