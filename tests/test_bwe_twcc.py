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
