"""Per-call cost of the SFU's per-packet operations.

Run: ``python -m benchmarks.packet_ops`` -> JSON object {operation: ns per call},
each the median of 5 timeit runs on a 1200-byte RTP packet (VP8 payload with
a full descriptor). ``--build-variants`` instead compares the ways of building
an outgoing packet that ``rtp_header.build_packet`` chose between.

Numbers include the Python call itself; stateful operations that need a fresh
sequence number per call (TemporalLayerFilter.accept) also include one
``next()`` on an ``itertools.count``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import struct
import timeit
from collections.abc import Callable

from mediaserver import h264, vp8
from mediaserver.loss_detector import LossDetector
from mediaserver.packet_cache import PacketCache
from mediaserver.rtp_header import build_packet, parse_header
from mediaserver.sequence_validator import SequenceValidator
from mediaserver.stream_stats import ReceiveStats

RUNS = 5
PACKET_SIZE = 1200


def sample_packet() -> tuple[bytes, memoryview]:
    """A 1200-byte VP8 RTP packet with a 2-element header extension."""
    descriptor = bytes([0x90, 0xE0, 0x80 | 0x12, 0x34, 0x07, 0x40])  # I(15) L T, TID1 Y
    vp8_header = bytes([0x10, 0x02, 0x00, 0x9D])  # keyframe start (P=0)
    extension = b"\xbe\xde\x00\x02" + bytes([0x10, 0x30, 0x22, 0x12, 0x34, 0x56, 0, 0])
    header = struct.pack("!BBHII", 0x90, 0x80 | 96, 4242, 123456789, 0xCAFEBABE)
    fixed = header + extension + descriptor + vp8_header
    data = fixed + bytes(range(256)) * 5
    data = data[:PACKET_SIZE]
    offset = len(header) + len(extension)
    return data, memoryview(data)[offset:]


def per_call_ns(stmt: Callable[[], object] | str, setup: str = "pass",
                namespace: dict[str, object] | None = None) -> float:
    """Median over RUNS of the per-call time, auto-calibrated to ~0.2 s per run."""
    timer = timeit.Timer(stmt, setup, globals=namespace)
    number, _ = timer.autorange()
    number = max(number, 1000)
    return statistics.median(timer.timeit(number) / number * 1e9 for _ in range(RUNS))


def measure() -> dict[str, float]:
    data, payload = sample_packet()
    assert len(data) == PACKET_SIZE and parse_header(data) is not None
    fields = vp8.descriptor_fields(payload)
    assert fields is not None
    cache = PacketCache(1024)
    forward_filter = vp8.TemporalLayerFilter(2)
    drop_filter = vp8.TemporalLayerFilter(0)
    ns: dict[str, object] = {
        "parse_header": parse_header,
        "build_packet": build_packet,
        "descriptor_fields": vp8.descriptor_fields,
        "rewrite_descriptor": vp8.rewrite_descriptor,
        "h264_is_keyframe": h264.is_keyframe,
        "data": data,
        "offset": len(data) - len(payload),
        "payload": payload,
        "h264_payload": bytes([0x7C, 0x85]) + bytes(PACKET_SIZE - 14),
        "forward_accept": forward_filter.accept,
        "drop_accept": drop_filter.accept,
        "out_seq": forward_filter.out_seq,
        # One counter per stateful operation, created once: timeit re-runs its
        # setup for every run while the objects keep their state, so a counter
        # in the setup would restart and measure the "stale packet" path.
        "c_fwd": itertools.count(),
        "c_drop": itertools.count(),
        "c_stats": itertools.count(),
        "c_loss": itertools.count(),
        "put": cache.put,
        "get": cache.get,
        "extend": SequenceValidator().extend,
        "recv_stats": ReceiveStats(90000).on_packet,
        "loss": LossDetector().on_packet,
    }
    results = {
        "parse_header": per_call_ns("parse_header(data)", namespace=ns),
        "build_packet": per_call_ns(
            "build_packet(96, 1, 4242, 123456789, 0xCAFEBABE, payload)", namespace=ns),
        "descriptor_fields": per_call_ns("descriptor_fields(payload)", namespace=ns),
        # As Producer.receive calls it: the packet and its payload offset, no slice.
        "descriptor_fields(packet, offset)": per_call_ns("descriptor_fields(data, offset)",
                                                         namespace=ns),
        "memoryview slice + descriptor_fields": per_call_ns(
            "descriptor_fields(memoryview(data)[offset:])", namespace=ns),
        "rewrite_descriptor": per_call_ns("rewrite_descriptor(payload, 77, 5)", namespace=ns),
        "TemporalLayerFilter.accept(forward)": per_call_ns(
            "forward_accept(next(c_fwd), 1, True, 1, False)", namespace=ns),
        "TemporalLayerFilter.accept(drop)": per_call_ns(
            "drop_accept(next(c_drop), 2, True, 0, False)", namespace=ns),
        "TemporalLayerFilter.out_seq": per_call_ns("out_seq(123456)", namespace=ns),
        "PacketCache.put": per_call_ns("put(4242, data)", namespace=ns),
        "PacketCache.get": per_call_ns("get(4242)", namespace=ns),
        "SequenceValidator.extend": per_call_ns("extend(4242, 1.5)", namespace=ns),
        "ReceiveStats.on_packet": per_call_ns(
            "recv_stats(next(c_stats), 3000, 0.033)", namespace=ns),
        "LossDetector.on_packet": per_call_ns("loss(next(c_loss), 0.0)", namespace=ns),
        "h264.is_keyframe(FU-A)": per_call_ns("h264_is_keyframe(h264_payload)", namespace=ns),
    }
    return {name: round(value, 1) for name, value in results.items()}


def build_variants() -> dict[str, float]:
    """Candidate implementations of build_packet, same arguments, same output."""
    fixed = struct.Struct("!BBHII")
    pack, pack_into = fixed.pack, fixed.pack_into
    payload = bytes(range(256)) * 4 + bytes(PACKET_SIZE - 1024)
    view = memoryview(payload)
    sized: dict[int, Callable[..., bytes]] = {}

    def concat(pt: int, m: int, seq: int, ts: int, ssrc: int, p: bytes | memoryview) -> bytes:
        return pack(0x80, pt | (m << 7), seq, ts, ssrc) + p

    def join(pt: int, m: int, seq: int, ts: int, ssrc: int, p: bytes | memoryview) -> bytes:
        return b"".join((pack(0x80, pt | (m << 7), seq, ts, ssrc), p))

    def prealloc(pt: int, m: int, seq: int, ts: int, ssrc: int,
                 p: bytes | memoryview) -> bytes:
        buf = bytearray(12 + len(p))
        pack_into(buf, 0, 0x80, pt | (m << 7), seq, ts, ssrc)
        buf[12:] = p
        return bytes(buf)

    def sized_struct(pt: int, m: int, seq: int, ts: int, ssrc: int, p: bytes) -> bytes:
        packer = sized.get(len(p))
        if packer is None:
            packer = sized[len(p)] = struct.Struct(f"!BBHII{len(p)}s").pack
        return packer(0x80, pt | (m << 7), seq, ts, ssrc, p)

    expected = concat(96, 1, 1, 2, 3, payload)
    candidates: list[tuple[str, Callable[..., bytes], bytes | memoryview]] = [
        ("pack+concat(bytes)", concat, payload),
        ("pack+concat(memoryview)", concat, view),
        ("join(bytes)", join, payload),
        ("join(memoryview)", join, view),
        ("bytearray+pack_into+bytes()(bytes)", prealloc, payload),
        ("sized Struct cache(bytes only)", sized_struct, payload),
        ("production build_packet(memoryview)", build_packet, view),
    ]
    results = {}
    for name, func, arg in candidates:
        assert func(96, 1, 1, 2, 3, arg) == expected
        results[name] = round(per_call_ns(lambda f=func, a=arg: f(96, 1, 1, 2, 3, a)), 1)
    # The lambda adds one call; report it so numbers can be compared with measure().
    results["(lambda overhead)"] = round(per_call_ns(lambda: None), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-variants", action="store_true",
                        help="compare build_packet implementations instead")
    args = parser.parse_args()
    print(json.dumps(build_variants() if args.build_variants else measure(), indent=2))


if __name__ == "__main__":
    main()
