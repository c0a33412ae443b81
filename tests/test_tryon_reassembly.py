"""Frame reassembly for the try-on pipeline: RTP packets of a forwarded stream to frames."""

from __future__ import annotations

import pytest

from mediaserver.tryon.reassembly import FrameAssembler

pytestmark = pytest.mark.unit


def packets(start: int, sizes: list[int], keyframe_first: bool = False
            ) -> list[tuple[int, int, int, bytes, bool]]:
    """(seq, marker, timestamp, payload, keyframe) for frames of the given packet counts."""
    out = []
    seq = start
    for frame, size in enumerate(sizes):
        for i in range(size):
            out.append((seq, int(i == size - 1), frame * 3000, bytes([frame, i]),
                        keyframe_first and frame == 0 and i == 0))
            seq += 1
    return out


def feed(assembler: FrameAssembler, items: list[tuple[int, int, int, bytes, bool]],
         now: float = 0.0) -> list[tuple[int, int]]:
    """Push packets; returns (timestamp, packet count) of each completed frame."""
    done = []
    for seq, marker, ts, payload, key in items:
        for frame in assembler.push(seq, marker, ts, payload, key, now) or []:
            done.append((frame.timestamp, len(frame.payloads)))
    return done


def test_starts_at_a_keyframe_and_splits_at_markers() -> None:
    assembler = FrameAssembler()
    stream = packets(100, [3, 1, 2], keyframe_first=True)
    # Packets before the first keyframe are useless to a decoder: ignored.
    assert feed(assembler, packets(90, [2])) == []
    assert feed(assembler, stream) == [(0, 3), (3000, 1), (6000, 2)]
    assert assembler.frames == 3


def test_reordered_and_retransmitted_packets_complete_the_frame() -> None:
    assembler = FrameAssembler()
    stream = packets(65530, [4, 2], keyframe_first=True)
    order = [stream[0], stream[2], stream[3], stream[4], stream[5]]
    assert feed(assembler, order) == []  # packet 65531 is missing: nothing complete yet
    assert feed(assembler, [stream[1]]) == [(0, 4), (3000, 2)]  # the NACKed one arrives
    assert feed(assembler, [stream[1]]) == []  # a duplicate retransmission is ignored
    payloads = []
    assembler2 = FrameAssembler()
    for seq, marker, ts, payload, key in stream:
        for frame in assembler2.push(seq, marker, ts, payload, key, 0.0) or []:
            payloads.append(frame.payloads)
    assert payloads[0] == [bytes([0, i]) for i in range(4)], "in sequence order"


def test_a_lost_packet_drops_to_the_next_keyframe_after_the_wait() -> None:
    assembler = FrameAssembler(max_wait_s=0.2)
    stream = packets(10, [2, 2, 2], keyframe_first=True)
    assert feed(assembler, stream[:2], now=0.0) == [(0, 2)]
    # Frame 2's first packet is lost for good; frame 3 arrives.
    assert feed(assembler, stream[3:], now=0.05) == []
    assert not assembler.need_keyframe  # still waiting for a retransmission
    assert feed(assembler, [(16, 0, 9000, b"x", False)], now=0.3) == []
    assert assembler.need_keyframe and assembler.gaps == 1
    # Delta frames are refused until a keyframe restarts decoding.
    assert feed(assembler, packets(17, [1]), now=0.4) == []
    assert feed(assembler, packets(18, [2], keyframe_first=True), now=0.5) == [(0, 2)]
    assert not assembler.need_keyframe
