"""mediaserver.vp8 against real aiortc/libvpx VP8 packets, with aiortc's parser as oracle."""

from __future__ import annotations

import fractions
import itertools
import random
from dataclasses import dataclass

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from mediaserver.rtp_header import build_packet_with_head, parse_header
from mediaserver.sequence_validator import SequenceValidator
from mediaserver.vp8 import (
    TemporalLayerFilter,
    Vp8Descriptor,
    descriptor_fields,
    parse_descriptor,
    rewrite_descriptor,
    rewrite_descriptor_head,
)

pytestmark = pytest.mark.unit

KEYFRAME_AT = (0, 5)


def encode_frames(count: int, keyframes: tuple[int, ...] = KEYFRAME_AT) -> list[list[bytes]]:
    """RTP payloads per frame from aiortc's VP8 encoder; noisy images force multi-packet
    frames."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000,
                                                payloadType=96))
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        image = np.roll(base, i * 3, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ts = encoder.encode(frame, force_keyframe=i in keyframes)
        frames.append(payloads)
    return frames


@pytest.fixture(scope="module")
def real_frames() -> list[list[bytes]]:
    return encode_frames(8)


def oracle_fields(payload: bytes) -> tuple[int, int, int, int, int, int, int, int]:
    descr, rest = VpxPayloadDescriptor.parse(payload)
    tid, sync = descr.tid if descr.tid is not None else (-1, 0)
    return (len(payload) - len(rest), descr.partition_start, descr.partition_id,
            -1 if descr.picture_id is None else descr.picture_id,
            -1 if descr.tl0picidx is None else descr.tl0picidx, tid, sync,
            -1 if descr.keyidx is None else descr.keyidx)


def decoded_keyframes(frames: list[list[bytes]]) -> list[bool]:
    """Independent keyframe oracle: decode each frame with FFmpeg's native VP8 decoder
    (the libvpx wrapper does not report key_frame)."""
    decoder = av.CodecContext.create("vp8", "r")
    flags = []
    for payloads in frames:
        data = b"".join(VpxPayloadDescriptor.parse(p)[1] for p in payloads)
        decoded = decoder.decode(av.Packet(data))
        assert len(decoded) == 1
        flags.append(bool(decoded[0].key_frame))
    return flags


def test_fields_match_oracle_on_real_packets(real_frames: list[list[bytes]]) -> None:
    count = 0
    for payloads in real_frames:
        for payload in payloads:
            fields = descriptor_fields(payload)
            assert fields is not None
            size, start, pid, picture_id, bits, tl0, tid, sync, keyidx, _key = fields
            assert (size, start, pid, picture_id, tl0, tid, sync, keyidx) == \
                oracle_fields(payload)
            assert bits == 15  # aiortc always sends the long picture id
            assert descriptor_fields(memoryview(payload)) == fields
            assert descriptor_fields(b"\x80\x60rtp" + payload, 5) == fields  # in a packet
            count += 1
    assert count > len(real_frames)  # multi-packet frames were exercised


def test_keyframe_start_exactly_on_first_packet_of_keyframes(
        real_frames: list[list[bytes]]) -> None:
    decoded_key = decoded_keyframes(real_frames)
    assert [i for i, key in enumerate(decoded_key) if key] == list(KEYFRAME_AT)
    assert len(real_frames[0]) > 1
    for i, payloads in enumerate(real_frames):
        flags = [descriptor_fields(p)[9] for p in payloads]  # type: ignore[index]
        assert flags == [decoded_key[i]] + [False] * (len(payloads) - 1)


def test_picture_ids_of_real_stream_are_consecutive(real_frames: list[list[bytes]]) -> None:
    ids = [parse_descriptor(p[0]).picture_id for p in real_frames]  # type: ignore[union-attr]
    assert [(b - a) % 32768 for a, b in itertools.pairwise(ids)] == [1] * (len(ids) - 1)


def build_descriptor(start: int, pid: int, picture_id: int | None, bits: int,
                     tl0: int | None, tid: int | None, sync: int, keyidx: int | None,
                     non_ref: int = 0) -> bytes:
    """Independent, hand-written serializer (aiortc's cannot write 7-bit ids or N)."""
    first = (non_ref << 5) | (start << 4) | pid
    ext = ((picture_id is not None) << 7 | (tl0 is not None) << 6 | (tid is not None) << 5
           | (keyidx is not None) << 4)
    if not ext:
        return bytes([first])
    out = bytearray([0x80 | first, ext])
    if picture_id is not None:
        if bits == 15:
            out += (0x8000 | picture_id).to_bytes(2, "big")
        else:
            out.append(picture_id)
    if tl0 is not None:
        out.append(tl0)
    if tid is not None or keyidx is not None:
        out.append(((tid or 0) << 6) | (sync << 5) | (keyidx or 0))
    return bytes(out)


def test_all_field_combinations_match_oracle() -> None:
    rng = random.Random(3)
    combos = itertools.product((0, 1), (0, 3), (None, 7, 15), (False, True), (False, True),
                               (False, True), (0, 1))
    for start, pid, bits, has_tl0, has_tid, has_key, vp8_p in combos:
        picture_id = None if bits is None else rng.randrange(1 << bits)
        tl0 = rng.randrange(256) if has_tl0 else None
        tid = rng.randrange(4) if has_tid else None
        sync = rng.randrange(2) if has_tid else 0
        keyidx = rng.randrange(32) if has_key else None
        descriptor = build_descriptor(start, pid, picture_id, bits or 0, tl0, tid, sync, keyidx,
                                      non_ref=rng.randrange(2))
        payload = descriptor + bytes([0x10 | vp8_p, 0x02, 0x00, 0x9D])
        fields = parse_descriptor(payload)
        assert fields is not None
        assert (fields.size, fields.start_of_partition, fields.partition_id, fields.picture_id,
                fields.tl0picidx, fields.tid, fields.layer_sync, fields.keyidx) == \
            oracle_fields(payload)
        assert fields.picture_id_bits == (bits or 0)
        assert fields.is_keyframe_start == (start == 1 and pid == 0 and vp8_p == 0)
        assert isinstance(fields, Vp8Descriptor) and tuple(fields) == descriptor_fields(payload)
        assert descriptor_fields(bytes(12) + payload, 12) == tuple(fields)


def test_reserved_bits_are_ignored() -> None:
    # |X|R|N|S|R| PID |: the R bit next to PID is not part of it (aiortc's parser
    # includes it, so no oracle here).
    for descriptor in (b"\x18", b"\x98\x80\x80\x05"):
        fields = parse_descriptor(descriptor + b"\x10\x02\x00\x9d")
        assert fields is not None
        assert (fields.start_of_partition, fields.partition_id) == (1, 0)
        assert fields.is_keyframe_start
    assert parse_descriptor(b"\x9b\x80\x80\x05\x10\x02\x00").partition_id == 3  # type: ignore[union-attr]


def test_truncated_descriptors_are_rejected() -> None:
    for full in (build_descriptor(1, 0, 0x1234, 15, 9, 2, 1, 5) + b"\x00",
                 build_descriptor(1, 0, 0x1234, 15, 9, 2, 1, None) + b"\x00",  # I+L+T
                 build_descriptor(1, 0, 0x1234, 15, None, None, 0, None) + b"\x00",  # I
                 build_descriptor(1, 0, 0x12, 7, 9, None, 0, None) + b"\x00"):
        assert descriptor_fields(full) is not None
        for cut in range(len(full)):  # includes "descriptor but no VP8 data"
            assert descriptor_fields(full[:cut]) is None
            assert descriptor_fields(bytes(12) + full[:cut], 12) is None
    assert descriptor_fields(b"") is None
    assert descriptor_fields(b"\x10") is None


def test_rewrite_roundtrips_through_oracle(real_frames: list[list[bytes]]) -> None:
    payload = real_frames[1][0]
    rewritten = rewrite_descriptor(payload, 40000, None)  # > 15 bits: wraps
    assert type(rewritten) is bytes and len(rewritten) == len(payload)
    descr, rest = VpxPayloadDescriptor.parse(rewritten)
    assert descr.picture_id == 40000 % 32768
    assert rest == VpxPayloadDescriptor.parse(payload)[1]
    assert descr.partition_start == 1
    # None keeps the original.
    assert rewrite_descriptor(payload, None, None) == payload
    assert rewrite_descriptor(memoryview(payload), 5, 7) == rewrite_descriptor(payload, 5, 7)


def test_rewrite_keeps_width_and_only_touches_present_fields() -> None:
    data = b"\x10\x02\x00\x9dvp8"
    seven = build_descriptor(1, 0, 100, 7, 200, 1, 1, 3) + data
    out = rewrite_descriptor(seven, 130, 257)
    assert len(out) == len(seven)
    fields = parse_descriptor(out)
    assert fields is not None
    assert (fields.picture_id, fields.picture_id_bits, fields.tl0picidx) == (2, 7, 1)
    assert (fields.tid, fields.layer_sync, fields.keyidx) == (1, 1, 3)
    assert out.endswith(data)

    no_pid = build_descriptor(0, 0, None, 0, 5, 2, 0, None) + data
    out = rewrite_descriptor(no_pid, 1234, 6)
    assert parse_descriptor(out).picture_id == -1  # type: ignore[union-attr]
    assert parse_descriptor(out).tl0picidx == 6  # type: ignore[union-attr]

    bare = b"\x10" + data
    assert rewrite_descriptor(bare, 1, 1) == bare
    head, size = rewrite_descriptor_head(seven, 1, 2)
    assert size == 5 and head + seven[size:] == rewrite_descriptor(seven, 1, 2)
    with pytest.raises(ValueError):
        rewrite_descriptor(b"\x90\x80\x81", 1, None)  # truncated 15-bit id


# --- temporal layer filter ------------------------------------------------------------

L1T3 = (0, 2, 1, 2)


@dataclass
class Packet:
    seq_ext: int
    timestamp: int
    frame: int
    tid: int
    data: bytes  # full RTP packet


def l1t3_stream(frame_data: list[bytes], *, start_seq: int = 65530, start_pid: int = 32760,
                sync: set[int] | None = None, ssrc: int = 0x1234) -> list[Packet]:
    """An L1T3 VP8 RTP stream built from real encoded frames.

    Frame i has TID L1T3[i % 4], 1-3 packets, consecutive picture ids (wrapping at
    2**15) and TL0PICIDX counting TL0 frames. ``sync`` lists the frames with Y=1
    (default: the first TL2 and TL1 frame of every group, as libwebrtc does).
    """
    packets: list[Packet] = []
    seq = start_seq
    tl0 = 250
    for i, data in enumerate(frame_data):
        tid = L1T3[i % 4]
        if tid == 0 and i:
            tl0 += 1
        y = int(i % 4 in (1, 2)) if sync is None else int(i in sync)
        parts = 1 + i % 3
        chunk = -(-len(data) // parts)
        for p in range(parts):
            descr = VpxPayloadDescriptor(partition_start=int(p == 0), partition_id=0,
                                         picture_id=(start_pid + i) % 32768,
                                         tl0picidx=tl0 % 256, tid=(tid, y))
            payload = bytes(descr) + data[p * chunk:(p + 1) * chunk]
            rtp = RtpPacket(payload_type=96, marker=int(p == parts - 1),
                            sequence_number=seq & 0xFFFF, timestamp=i * 3000, ssrc=ssrc,
                            payload=payload)
            packets.append(Packet(seq, i * 3000, i, tid, rtp.serialize()))
            seq += 1
    return packets


@pytest.fixture(scope="module")
def frame_data() -> list[bytes]:
    frames = encode_frames(24, keyframes=(0,))
    return [b"".join(VpxPayloadDescriptor.parse(p)[1] for p in f) for f in frames]


@dataclass
class Forwarded:
    in_seq: int
    frame: int
    out: RtpPacket
    picture_id: int


def forward(packets: list[Packet], filt: TemporalLayerFilter,
            on_packet: dict[int, int] | None = None) -> list[Forwarded]:
    """The SFU's per-packet path for one receiver, using only production code.

    ``on_packet`` maps an index in ``packets`` to a new ``max_tid`` applied before it.
    """
    sequence = SequenceValidator()
    out: list[Forwarded] = []
    for index, packet in enumerate(packets):
        if on_packet and index in on_packet:
            filt.max_tid = on_packet[index]
        header = parse_header(packet.data)
        assert header is not None
        pt, marker, seq, ts, _ssrc, offset = header
        seq_ext = sequence.extend(seq, index / 100)
        assert seq_ext is not None
        payload = memoryview(packet.data)[offset:]
        f = descriptor_fields(payload)
        assert f is not None
        if not filt.accept(seq_ext, f[6], f[1] == 1 and f[2] == 0, f[7], f[9]):
            continue
        picture_id = filt.out_picture_id(f[3], f[4])
        head, size = rewrite_descriptor_head(payload, picture_id, None)
        data = build_packet_with_head(pt, marker, filt.out_seq(seq_ext), ts, 0x5555, head,
                                      payload[size:])
        rtp = RtpPacket.parse(data)
        descr, _ = VpxPayloadDescriptor.parse(rtp.payload)
        assert descr.picture_id == picture_id
        out.append(Forwarded(seq_ext, packet.frame, rtp, picture_id))
    return out


def assert_contiguous(forwarded: list[Forwarded]) -> None:
    seqs = [f.out.sequence_number for f in forwarded]
    assert [(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)] == [1] * (len(seqs) - 1)
    starts = [f for f in forwarded if VpxPayloadDescriptor.parse(f.out.payload)[0]
              .partition_start]
    pids = [f.picture_id for f in starts]
    assert [(b - a) % 32768 for a, b in itertools.pairwise(pids)] == [1] * (len(pids) - 1)
    # Every packet of a frame carries that frame's picture id.
    by_frame: dict[int, set[int]] = {}
    for f in forwarded:
        by_frame.setdefault(f.frame, set()).add(f.picture_id)
    assert all(len(ids) == 1 for ids in by_frame.values())


def index_of(packets: list[Packet], seq_ext: int) -> int:
    return next(i for i, p in enumerate(packets) if p.seq_ext == seq_ext)


def frames_of(packets: list[Packet]) -> dict[int, list[int]]:
    frames: dict[int, list[int]] = {}
    for p in packets:
        frames.setdefault(p.frame, []).append(p.seq_ext)
    return frames


@pytest.mark.parametrize("max_tid, kept", [(0, {0}), (1, {0, 1}), (2, {0, 1, 2})])
def test_filter_keeps_layers_without_gaps(frame_data: list[bytes], max_tid: int,
                                          kept: set[int]) -> None:
    packets = l1t3_stream(frame_data)
    forwarded = forward(packets, TemporalLayerFilter(max_tid))
    frames = frames_of(packets)
    expected_frames = [i for i in frames if L1T3[i % 4] in kept]
    # Whole frames only: all packets of kept frames, nothing of the others.
    assert [f.in_seq for f in forwarded] == [s for i in expected_frames for s in frames[i]]
    assert_contiguous(forwarded)
    assert forwarded[0].out.sequence_number == 65530  # no offset before the first drop
    assert any(f.out.sequence_number < 100 for f in forwarded)  # output wrapped too
    assert forwarded[0].picture_id == 32760
    assert forwarded[-1].picture_id == (32760 + len(expected_frames) - 1) % 32768
    # Payload bytes after the descriptor are untouched.
    originals = {p.seq_ext: RtpPacket.parse(p.data) for p in packets}
    for f in forwarded:
        original = originals[f.in_seq]
        assert VpxPayloadDescriptor.parse(f.out.payload)[1] == \
            VpxPayloadDescriptor.parse(original.payload)[1]
        assert f.out.timestamp == original.timestamp and f.out.marker == original.marker


def test_switch_up_waits_for_layer_sync(frame_data: list[bytes]) -> None:
    # Y=1 only on frames 9 (TID2), 14 (TID1) and 17 (TID2); no TID0 shortcut.
    packets = l1t3_stream(frame_data, sync={9, 14, 17})
    switch_at = index_of(packets, frames_of(packets)[6][0])  # request TID2 at frame 6 (TID1)
    filt = TemporalLayerFilter(0, tid0_switch=False)
    forwarded = forward(packets, filt, {switch_at: 2})
    kept = sorted({f.frame for f in forwarded})
    # Frames 6/7 (no Y) stay out; frame 9 (TID2, Y) cannot skip TID1; frame 14 (TID1, Y)
    # raises to 1, frame 15 (TID2, no Y) stays out, frame 17 (TID2, Y) raises to 2.
    assert kept == [0, 4, 8, 12, 14, 16, 17, 18, 19, 20, 21, 22, 23]
    assert filt.current_tid == 2
    assert_contiguous(forwarded)


def test_switch_up_at_tid0_frame_by_default(frame_data: list[bytes]) -> None:
    packets = l1t3_stream(frame_data, sync=set())  # no Y bits at all
    switch_at = index_of(packets, frames_of(packets)[5][1])  # mid TID2 frame 5
    filt = TemporalLayerFilter(0)
    forwarded = forward(packets, filt, {switch_at: 2})
    kept = sorted({f.frame for f in forwarded})
    assert kept == [0, 4, *range(8, 24)]
    assert_contiguous(forwarded)


def test_switch_down_at_next_frame_start_keeps_current_frame_whole(
        frame_data: list[bytes]) -> None:
    packets = l1t3_stream(frame_data)
    frames = frames_of(packets)
    assert len(frames[5]) == 3
    middle_of_5 = index_of(packets, frames[5][1])
    forwarded = forward(packets, TemporalLayerFilter(2), {middle_of_5: 0})
    kept = [f.frame for f in forwarded]
    # Frame 5 (TID2) was started, so it is completed; then only TID0 frames.
    assert sorted(set(kept)) == [0, 1, 2, 3, 4, 5, 8, 12, 16, 20]
    assert kept.count(5) == 3
    assert_contiguous(forwarded)


def test_keyframe_switches_immediately(frame_data: list[bytes]) -> None:
    filt = TemporalLayerFilter(0, tid0_switch=False)
    assert filt.accept(100, 0, True, 0, False)
    filt.max_tid = 2
    assert not filt.accept(101, 2, True, 0, False)  # no sync point yet
    assert filt.accept(102, 0, True, 0, True)  # keyframe
    assert filt.current_tid == 2
    assert filt.accept(103, 2, True, 0, False)


def test_reordering_keeps_frame_decisions_and_unique_outputs(
        frame_data: list[bytes]) -> None:
    packets = l1t3_stream(frame_data)
    in_order = {f.in_seq: f for f in forward(packets, TemporalLayerFilter(1))}
    rng = random.Random(5)
    shuffled = packets[:]
    for i in range(1, len(shuffled) - 1, 3):  # swap neighbours here and there
        if rng.random() < 0.6:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    forwarded = forward(shuffled, TemporalLayerFilter(1))
    assert {f.in_seq for f in forwarded} == set(in_order)  # same whole frames
    # Output numbers are unique and in input order; gaps may only appear where a
    # dropped packet arrived after a later packet had already been forwarded.
    by_input = sorted(forwarded, key=lambda f: f.in_seq)
    outs = [f.out.sequence_number for f in by_input]
    steps = [(b - a) & 0xFFFF for a, b in itertools.pairwise(outs)]
    assert all(1 <= s < 4 for s in steps)
    pids: dict[int, set[int]] = {}
    for f in forwarded:
        pids.setdefault(f.frame, set()).add(f.picture_id)
    assert all(len(ids) == 1 for ids in pids.values())
    ordered = [pids[frame].pop() for frame in sorted(pids)]
    assert all((b - a) % 32768 in (1, 2) for a, b in itertools.pairwise(ordered))


def test_late_packets_from_before_a_switch_use_the_old_decision() -> None:
    filt = TemporalLayerFilter(2)
    assert filt.accept(10, 2, True, 0, False)   # TID2 frame: 10, 11, 12
    assert filt.accept(11, 2, False, 0, False)
    filt.max_tid = 0
    assert filt.accept(13, 0, True, 0, False)   # switch down here
    assert filt.accept(12, 2, False, 0, False)  # late packet of the TID2 frame: still sent
    assert not filt.accept(14, 2, True, 0, False)
    assert [filt.out_seq(s) for s in (10, 11, 12, 13)] == [10, 11, 12, 13]
    assert filt.accept(16, 0, True, 0, False)
    assert filt.out_seq(16) == 15  # 15 never arrived: a real loss stays visible


def test_late_drop_below_forwarded_packets_does_not_shift_outputs() -> None:
    filt = TemporalLayerFilter(0)
    assert filt.accept(1, 0, True, 0, True)
    assert filt.accept(3, 0, True, 0, False)
    assert filt.out_seq(3) == 3
    assert not filt.accept(2, 2, True, 0, False)  # late TID2 frame: dropped...
    assert filt.accept(4, 0, True, 0, False)
    assert filt.out_seq(4) == 4  # ...but output 3 is taken: the gap stays a "loss"
    assert filt.out_seq(3) == 3
    assert filt.out_picture_id(10, 15, seq_ext=4) == 10


def test_late_packet_judged_with_threshold_of_its_time_after_two_switches() -> None:
    filt = TemporalLayerFilter(2)
    assert filt.accept(1, 0, True, 0, True)
    assert filt.accept(2, 2, True, 0, False)       # TID2 frame 2..3, forwarded
    filt.max_tid = 0
    assert filt.accept(4, 0, True, 0, False)       # down to 0
    filt.max_tid = 1
    assert not filt.accept(5, 2, True, 0, False)
    assert filt.accept(6, 1, True, 1, False)       # up to 1 at a TID1 sync frame
    assert filt.accept(3, 2, False, 0, False)      # late: judged with 2, like packet 2
    assert not filt.accept(7, 2, False, 0, False)  # rest of no frame: TID2 > 1
    assert [filt.out_seq(s) for s in (1, 2, 3, 4, 6)] == [1, 2, 3, 4, 5]


def test_retransmission_of_dropped_packet_stays_dropped() -> None:
    filt = TemporalLayerFilter(0)
    assert filt.accept(1, 0, True, 0, True)
    assert not filt.accept(2, 2, True, 1, False)
    assert filt.accept(3, 0, True, 0, False)
    assert filt.out_seq(3) == 2
    filt.max_tid = 2
    assert filt.accept(4, 0, True, 0, False)  # TID0 frame: switch up
    assert not filt.accept(2, 2, True, 1, False)  # retransmitted 2 must not collide
    assert filt.accept(5, 2, True, 0, False)
    assert filt.out_seq(5) == 4


def test_dropped_seq_stays_dropped_after_switch_history_is_forgotten() -> None:
    filt = TemporalLayerFilter(0)
    assert filt.accept(1, 0, True, 0, True)
    assert not filt.accept(2, 2, True, 0, False)
    seq = 3
    for i in range(40):  # many switches push seq 2 out of the switch history
        filt.max_tid = 2 if i % 2 == 0 else 0
        assert filt.accept(seq, 0, True, 0, False)
        seq += 1
    assert filt.current_tid == 0
    # The oldest remembered threshold (2) now also applies to seq 2; only the record of
    # the drop keeps it from being forwarded with an output number already in use.
    assert filt._sw_thr[0] == 2
    assert not filt.accept(2, 2, True, 0, False)
    assert filt.out_seq(seq - 1) == seq - 2


def test_packets_without_temporal_info_always_pass() -> None:
    filt = TemporalLayerFilter(0)
    assert all(filt.accept(s, -1, True, 0, False) for s in range(10))
    assert [filt.out_seq(s) for s in range(10)] == list(range(10))
    assert filt.out_picture_id(127, 7) == 127
    assert filt.out_picture_id(-1, 0) == -1


def test_picture_id_wraps_with_its_width() -> None:
    filt = TemporalLayerFilter(0)
    assert filt.accept(1, 0, True, 0, True)
    assert filt.out_picture_id(126, 7) == 126
    assert not filt.accept(2, 2, True, 0, False)
    assert not filt.accept(3, 1, True, 0, False)
    assert filt.accept(4, 0, True, 0, False)
    assert filt.out_picture_id(1, 7) == 127   # 129 - 2 dropped, wrapped at 7 bits
    assert filt.out_picture_id(1, 15) == 32767
    assert filt.out_picture_id(0, 7, seq_ext=1) == 0  # explicit packet


def test_long_run_bounded_memory_and_still_contiguous() -> None:
    filt = TemporalLayerFilter(0, window=64)
    out_seqs = []
    pids = []
    seq = 0
    for frame in range(2000):
        tid = L1T3[frame % 4]
        for part in range(2):
            if filt.accept(seq, tid, part == 0, 0, frame == 0):
                out_seqs.append(filt.out_seq(seq))
                if part == 0:
                    pids.append(filt.out_picture_id(frame % 32768, 15))
            seq += 1
    assert len(out_seqs) == 1000
    assert out_seqs == list(range(1000))
    assert pids == list(range(500))
    assert len(filt._dropped) <= 3 * 64 and len(filt._frames) <= 3 * 64
    assert not filt.accept(10, 0, True, 0, False)  # far behind the horizon: refused
