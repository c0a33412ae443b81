"""mediaserver.rtp_header against aiortc's own RTP serializer/parser as the oracle."""

from __future__ import annotations

import fractions
import random

import av
import numpy as np
import pytest
from aiortc.codecs import HEADER_EXTENSIONS, get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtcpRrPacket, RtpPacket

from mediaserver.rtp_header import (
    RTP_FIXED,
    TimestampUnwrapper,
    build_packet,
    build_packet_with_head,
    is_rtcp,
    parse_header,
)

pytestmark = pytest.mark.unit


def vp8_payloads(frames: int = 2) -> list[bytes]:
    """Real VP8 RTP payloads from aiortc's encoder + packetizer."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000,
                                                payloadType=96))
    out: list[bytes] = []
    for i in range(frames):
        image = np.zeros((96, 128, 3), dtype=np.uint8)
        image[:, :, 0] = (np.arange(128) * 2 + i * 7) % 256
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ts = encoder.encode(frame)
        out.extend(payloads)
    return out


def extension_map() -> HeaderExtensionsMap:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpParameters(headerExtensions=HEADER_EXTENSIONS["video"]))
    return ext_map


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return vp8_payloads()


def test_parse_matches_aiortc_with_csrc_extensions_and_padding(payloads: list[bytes]) -> None:
    ext_map = extension_map()
    rng = random.Random(1)
    for i, payload in enumerate(payloads):
        packet = RtpPacket(payload_type=96 + i % 3, marker=i % 2,
                           sequence_number=rng.randrange(65536),
                           timestamp=rng.randrange(1 << 32), ssrc=rng.randrange(1 << 32),
                           payload=payload)
        packet.csrc = [rng.randrange(1 << 32) for _ in range(i % 4)]
        if i % 2:
            packet.extensions.mid = "video0"
            packet.extensions.abs_send_time = rng.randrange(1 << 24)
        packet.padding_size = (i % 3) * 5
        data = packet.serialize(ext_map)
        parsed = parse_header(data)
        assert parsed is not None
        pt, marker, seq, ts, ssrc, offset = parsed
        oracle = RtpPacket.parse(data, ext_map)
        assert (pt, marker, seq, ts, ssrc) == (oracle.payload_type, oracle.marker,
                                               oracle.sequence_number, oracle.timestamp,
                                               oracle.ssrc)
        # Payload starts at offset; padding (not stripped) follows the payload.
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        assert data[offset:end] == oracle.payload == payload
        # Works on memoryviews too (what the receive path hands over).
        assert parse_header(memoryview(data)) == parsed


def test_extension_offset_is_skipped() -> None:
    ext_map = extension_map()
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3,
                       payload=b"\x90payload")
    packet.extensions.mid = "a"
    data = packet.serialize(ext_map)
    assert data[0] & 0x10
    header = parse_header(data)
    assert header is not None
    ext_words = int.from_bytes(data[14:16], "big")
    assert header[5] == 12 + 4 + ext_words * 4
    assert data[header[5]:] == b"\x90payload"


@pytest.mark.parametrize("data", [
    b"",
    b"\x80\x60" + bytes(9),                       # 11 bytes
    b"\x40\x60" + bytes(10),                      # version 1
    b"\xc0\x60" + bytes(10) + b"x",               # version 3
    b"\x82\x60" + bytes(10) + bytes(4),           # CC=2 but one CSRC
    b"\x90\x60" + bytes(10) + b"\xbe\xde",        # X but no extension header
    b"\x90\x60" + bytes(10) + b"\xbe\xde\x00\x02" + bytes(4),  # ext length too long
    b"\xa0\x60" + bytes(10) + b"abc\x05",         # pad count 5 > 4 bytes after header
    b"\xa0\x60" + bytes(10) + b"abc\x00",         # pad count 0
    b"\xa0\x60" + bytes(10),                      # padding bit, nothing to pad
])
def test_malformed_packets_are_rejected(data: bytes) -> None:
    assert parse_header(data) is None


def test_boundary_cases_are_accepted() -> None:
    # Header only, no payload.
    assert parse_header(b"\x80\x60" + bytes(10)) == (0x60, 0, 0, 0, 0, 12)
    # Padding that consumes exactly the whole payload.
    assert parse_header(b"\xa0\xe0" + bytes(10) + b"\x00\x00\x00\x04") == (0x60, 1, 0, 0, 0, 12)
    # Extension ending exactly at the end of the packet.
    data = b"\x90\x60" + bytes(10) + b"\xbe\xde\x00\x01" + bytes(4)
    assert parse_header(data) == (0x60, 0, 0, 0, 0, 20)


def test_is_rtcp_demux() -> None:
    rr = bytes(RtcpRrPacket(ssrc=1234))
    assert RtcpPacket.parse(rr)  # sanity: a real RTCP packet
    assert is_rtcp(rr)
    for pt in (192, 200, 201, 205, 206, 223):
        assert is_rtcp(bytes([0x80, pt, 0, 1]))
    for second in (0, 96, 96 | 0x80, 111, 127 | 0x80, 191, 224):
        assert not is_rtcp(bytes([0x80, second, 0, 1]))
    rtp = RtpPacket(payload_type=96, marker=1, sequence_number=1, payload=b"x").serialize()
    assert not is_rtcp(rtp)
    assert not is_rtcp(b"\x80")


def test_build_packet_roundtrips_through_aiortc(payloads: list[bytes]) -> None:
    payload = payloads[0]
    for source in (payload, memoryview(payload), bytearray(payload)):
        data = build_packet(111, 1, 65535, 0xFFFFFFFF, 0xDEADBEEF, source)
        assert type(data) is bytes
        assert len(data) == 12 + len(payload)
        oracle = RtpPacket.parse(data)
        assert (oracle.payload_type, oracle.marker, oracle.sequence_number,
                oracle.timestamp, oracle.ssrc) == (111, 1, 65535, 0xFFFFFFFF, 0xDEADBEEF)
        assert oracle.payload == payload
        assert not oracle.csrc and data[0] == 0x80  # no padding, extension, CSRC
        assert parse_header(data) == (111, 1, 65535, 0xFFFFFFFF, 0xDEADBEEF, 12)
    assert RTP_FIXED.size == 12


def test_build_packet_drops_publisher_extensions() -> None:
    ext_map = extension_map()
    packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=8, ssrc=9,
                       payload=b"\x10media")
    packet.extensions.mid = "0"
    packet.csrc = [42]
    data = packet.serialize(ext_map)
    pt, marker, _seq, ts, _ssrc, offset = parse_header(data)  # type: ignore[misc]
    out = build_packet(pt, marker, 100, ts, 5555, memoryview(data)[offset:])
    assert out == RTP_FIXED.pack(0x80, 96, 100, 8, 5555) + b"\x10media"


def test_build_packet_with_head() -> None:
    out = build_packet_with_head(96, 0, 5, 6, 7, b"\x90\x80\x81\x02",
                                 memoryview(b"\x90\x80\x00\x01vp8data")[4:])
    assert out == build_packet(96, 0, 5, 6, 7, b"\x90\x80\x81\x02vp8data")


def test_timestamp_unwrapper() -> None:
    unwrap = TimestampUnwrapper().unwrap
    start = 0xFFFFFFFF - 3000
    assert unwrap(start) == start
    assert unwrap(start + 3000) == start + 3000
    assert unwrap(2999) == start + 6000          # wrapped
    assert unwrap(0xFFFFFFFF - 1) == 0xFFFFFFFF - 1  # reordered before the wrap
    assert unwrap(5999) == start + 9000
    # Reordering within half the 32-bit space.
    big = TimestampUnwrapper()
    big.unwrap(0)
    assert big.unwrap(0x7FFFFFFF) == 0x7FFFFFFF
    assert big.unwrap(0) == 0
    assert big.unwrap(0xFFFFFFFE) == 0xFFFFFFFE
