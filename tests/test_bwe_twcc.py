"""Transport-wide feedback: parsing what browsers send and building what we send them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediaserver.bwe.twcc import DELTA_US, build_feedback, iter_feedback, parse_feedback

pytestmark = pytest.mark.unit


def test_a_hand_built_feedback_is_read_packet_by_packet() -> None:
    # base 65534, 4 packets: received (+1 ms), lost, received (+65 ms: large), received
    # (-0.5 ms: negative, large). One 2-bit status vector chunk.
    reference = 1000  # x 64 ms
    chunk = 0xC000 | (1 << 12) | (0 << 10) | (2 << 8) | (2 << 6)
    deltas = bytes((4,)) + (260).to_bytes(2, "big") + (-2).to_bytes(2, "big", signed=True)
    body = (b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02" + (65534).to_bytes(2, "big")
            + (4).to_bytes(2, "big") + reference.to_bytes(3, "big") + bytes((9,))
            + chunk.to_bytes(2, "big") + deltas)
    pad = -len(body) % 4
    body += bytes(pad - 1) + bytes((pad,)) if pad else b""
    packet = bytes((0x80 | (0x20 if pad else 0) | 15, 205)) + \
        ((len(body) + 4) // 4 - 1).to_bytes(2, "big") + body
    fb = parse_feedback(packet)
    t0 = reference * 64_000
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.count) == (1, 2, 65534, 9)
    assert fb.arrivals == [t0 + 1000, None, t0 + 1000 + 65_000, t0 + 1000 + 65_000 - 500]


arrival_patterns = st.lists(
    st.one_of(st.none(), st.integers(0, 255), st.integers(-3000, 30_000)), min_size=1,
    max_size=400)


@settings(max_examples=300, derandomize=True, database=None)
@given(pattern=arrival_patterns, base=st.integers(0, 0xFFFF), start=st.integers(0, 2**31))
def test_built_feedback_parses_back_to_the_same_arrivals(
        pattern: list[int | None], base: int, start: int) -> None:
    arrivals: list[int | None] = [start]
    at = start
    for step in pattern:
        if step is None:
            arrivals.append(None)
        else:
            at += step * DELTA_US
            arrivals.append(at)
    fb = parse_feedback(build_feedback(11, 22, base, arrivals, 300))
    assert fb.base_seq == base and fb.count == 300 & 0xFF and len(fb.arrivals) == len(arrivals)
    for got, sent in zip(fb.arrivals, arrivals, strict=True):
        assert (got is None) == (sent is None)
        if sent is not None:
            assert abs(got - sent) < DELTA_US  # on the 250 us grid, never drifting


def test_runs_of_lost_and_received_packets_use_run_length_chunks() -> None:
    arrivals = [1_000_000 + i * 1000 for i in range(50)] + [None] * 3000 + [5_000_000]
    packet = build_feedback(1, 2, 10, arrivals, 0)
    assert len(packet) < 120  # 3,051 statuses in a handful of chunks
    assert parse_feedback(packet).arrivals[-1] == 5_000_000


@settings(max_examples=500, derandomize=True, database=None)
@given(data=st.binary(max_size=200))
def test_garbage_raises_value_error_and_nothing_else(data: bytes) -> None:
    packet = bytes((0x8F, 205)) + ((len(data) + 4) // 4 - 1).to_bytes(2, "big") + data
    try:
        parse_feedback(packet)
    except ValueError:
        pass


def test_truncations_of_a_real_feedback_are_refused() -> None:
    packet = build_feedback(1, 2, 100, [0, None, 64_000, 5_000_000, None, 5_001_000], 3)
    parse_feedback(packet)
    for cut in range(len(packet)):
        with pytest.raises(ValueError):
            parse_feedback(packet[:cut])


def test_feedback_is_found_in_a_compound_packet() -> None:
    rr = bytes((0x80, 201, 0, 1)) + bytes(4)
    fb = build_feedback(1, 2, 100, [0, 1000], 1)
    compound = rr + fb + rr
    [offset] = list(iter_feedback(compound))
    assert parse_feedback(compound, offset).arrivals == [0, 1000]


# The receive side: what publishers send us --------------------------------------------------

def rtp_with_extensions(elements: bytes, *, two_byte: bool = False) -> bytes:
    pad = -len(elements) % 4
    block = elements + bytes(pad)
    profile = b"\x10\x00" if two_byte else b"\xbe\xde"
    return bytes((0x90, 96)) + bytes(10) + profile + (len(block) // 4).to_bytes(2, "big") \
        + block + b"payload"


def test_the_number_is_read_from_one_byte_and_two_byte_extensions() -> None:
    from mediaserver.bwe.arrivals import twcc_number

    # abs-send-time (id 2, 3 bytes), padding, transport-cc (id 5), mid (id 1)
    one = rtp_with_extensions(b"\x22\x01\x02\x03" + b"\x00" + b"\x51\x12\x34" + b"\x10a")
    assert twcc_number(one, 5) == 0x1234 and twcc_number(one, 7) == -1
    two = rtp_with_extensions(b"\x02\x03\x01\x02\x03" + b"\x05\x02\xab\xcd", two_byte=True)
    assert twcc_number(two, 5) == 0xABCD
    assert twcc_number(bytes((0x80, 96)) + bytes(10) + b"x", 5) == -1  # no extension
    assert twcc_number(one[:17], 5) == -1  # truncated


@settings(max_examples=300, derandomize=True, database=None)
@given(data=st.binary(min_size=1, max_size=60))
def test_garbage_extensions_give_minus_one(data: bytes) -> None:
    from mediaserver.bwe.arrivals import twcc_number

    packet = bytes((0x90 | (data[0] & 0x0F), 96)) + bytes(10) + data
    assert -1 <= twcc_number(packet, data[0] >> 4) <= 0xFFFF


def test_arrivals_become_feedback_with_losses_reordering_and_the_wrap() -> None:
    from mediaserver.bwe.arrivals import ArrivalRecorder

    rec = ArrivalRecorder(5, media_ssrc=0xAB)
    arrived = {65530: 1_000_000, 65531: 1_001_000, 65533: 1_004_000, 65532: 1_003_500,
               0: 1_010_000, 2: 1_020_000}  # 65534, 65535 and 1 lost; 65532 late
    for seq, at in arrived.items():
        rec.record(seq, at)
    [packet] = rec.feedback(sender_ssrc=7)
    fb = parse_feedback(packet)
    assert fb.base_seq == 65530 and fb.media_ssrc == 0xAB and len(fb.arrivals) == 9
    expected = [arrived.get((65530 + i) & 0xFFFF) for i in range(9)]
    assert [a if a is None else round(a / 250) * 250 for a in fb.arrivals] == \
        [e if e is None else round(e / 250) * 250 for e in expected]
    assert rec.feedback(sender_ssrc=7) == []  # nothing new
    rec.record(1, 1_030_000)  # too late: already reported lost
    rec.record(3, 1_031_000)
    [again] = rec.feedback(sender_ssrc=7)
    assert parse_feedback(again).base_seq == 3
