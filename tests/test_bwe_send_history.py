"""Transport-wide numbers on what we send: the C target and its Python twin stamp the same
bytes, share one numbering between the C fan-out and Python sends, and feedback maps back to
each packet's send time and size."""

from __future__ import annotations

import time

import pytest

from mediaserver.bwe.arrivals import twcc_number
from mediaserver.bwe.send_history import SIZE, FeedbackAdapter, SendHistory
from mediaserver.bwe.twcc import build_feedback, parse_feedback

pytestmark = pytest.mark.unit

PACKET = bytes((0x80, 96, 0, 7)) + bytes(8) + b"payload"


def histories() -> list[object]:
    out: list[object] = [SendHistory()]
    try:
        from mediaserver import _fanout
    except ImportError:
        return out
    out.append(_fanout.Target())
    return out


@pytest.mark.parametrize("history", histories(), ids=lambda h: type(h).__name__)
def test_stamping_inserts_the_next_number_and_records_the_send(history: object) -> None:
    assert history.stamp(PACKET) == PACKET  # off until negotiated
    history.ext_id = 3
    before = time.monotonic_ns() // 1000
    first, second = history.stamp(PACKET), history.stamp(PACKET)
    after = time.monotonic_ns() // 1000
    assert first[0] == 0x90 and first[1:12] == PACKET[1:12] and first[20:] == PACKET[12:]
    assert twcc_number(first, 3) == 1 and twcc_number(second, 3) == 2
    assert history.next_seq == 3
    assert before <= history.sent_us[1] <= history.sent_us[2] <= after
    assert history.sizes[1] == len(PACKET) + 8
    padded = bytes((0xA0,)) + PACKET[1:]  # padding bit: still stamped
    assert twcc_number(history.stamp(padded), 3) == 3
    with_ext = bytes((0x90,)) + PACKET[1:]
    assert history.stamp(with_ext) == with_ext  # never two extension blocks


def test_the_native_target_and_the_twin_stamp_identical_bytes() -> None:
    _fanout = pytest.importorskip("mediaserver._fanout")
    twin, native = SendHistory(), _fanout.Target()
    twin.ext_id = native.ext_id = 9
    for i in range(3):
        packet = bytes((0x80, 111, 0, i)) + bytes(8) + bytes(range(i * 10))
        assert twin.stamp(packet) == native.stamp(packet)


def test_feedback_maps_to_send_times_once_per_packet() -> None:
    history = SendHistory()
    history.ext_id = 5
    for _ in range(70_000 % SIZE + SIZE):  # numbers past 16 bits and around the ring
        history.stamp(PACKET)
    newest = history.next_seq - 1
    base16 = (newest - 9) & 0xFFFF
    arrivals = [1_000_000 + 1000 * i if i % 3 else None for i in range(10)]
    arrivals[0] = 1_000_000
    adapter = FeedbackAdapter(history)
    results = adapter.results(parse_feedback(build_feedback(1, 2, base16, arrivals, 0)))
    assert [r.seq for r in results] == list(range(newest - 9, newest + 1))
    assert all(r.send_s == history.sent_us[r.seq % SIZE] / 1e6 for r in results)
    assert [r.arrival_s is None for r in results] == [a is None for a in arrivals]
    # Reported again (a receiver repeats itself): nothing new; a lost one found: counted.
    arrivals[3] = 1_004_000
    again = adapter.results(parse_feedback(build_feedback(1, 2, base16, arrivals, 1)))
    assert [r.seq for r in again] == [newest - 9 + 3]
    assert adapter.duplicates == 9
    # Numbers we never sent are not made up.
    ahead = adapter.results(parse_feedback(build_feedback(1, 2, (newest + 5) & 0xFFFF,
                                                          [0], 2)))
    assert ahead == [] and adapter.unknown >= 1
