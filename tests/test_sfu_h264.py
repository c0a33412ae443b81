"""mediaserver.h264 with real libx264 packets (aiortc's H.264 packetizer) and hand-built ones."""

from __future__ import annotations

import fractions
import struct

import av
import numpy as np
import pytest
from aiortc.codecs import CODECS, get_encoder
from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from mediaserver.h264 import (
    DEFAULT_PROFILE_LEVEL_ID,
    h264_profile,
    is_keyframe,
    packetization_mode,
    profile_level_id,
    same_profile,
)

pytestmark = pytest.mark.unit

FORCED_KEY = 3


def encode_h264(count: int) -> list[list[bytes]]:
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000,
                                                payloadType=102))
    rng = np.random.default_rng(11)
    base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(np.roll(base, i * 2, axis=0), format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ts = encoder.encode(frame, force_keyframe=i == FORCED_KEY)
        frames.append(payloads)
    return frames


def nal_types(annexb: bytes) -> list[int]:
    return [chunk[0] & 0x1F for chunk in annexb.split(b"\x00\x00\x00\x01") if chunk]


@pytest.fixture(scope="module")
def h264_frames() -> list[list[bytes]]:
    try:
        return encode_h264(5)
    except Exception as exc:  # pragma: no cover - depends on the av build
        pytest.skip(f"libx264 not available in this av build: {exc}")


def test_real_packets_match_depayloader_oracle(h264_frames: list[list[bytes]]) -> None:
    decoder = av.CodecContext.create("h264", "r")
    key_frames = []
    kinds_seen = set()
    for index, payloads in enumerate(h264_frames):
        annexb = b""
        flags = []
        for payload in payloads:
            kinds_seen.add(payload[0] & 0x1F)
            descr, output = H264PayloadDescriptor.parse(payload)
            annexb += output
            expected = descr.first_fragment and bool({5, 7} & set(nal_types(output)))
            flags.append(is_keyframe(payload))
            assert flags[-1] == expected, (index, payload[:4].hex())
            assert is_keyframe(memoryview(payload)) == flags[-1]
            assert is_keyframe(b"\x80\x66" + payload, 2) == flags[-1]
        decoded = decoder.decode(av.Packet(annexb))
        assert len(decoded) == 1
        if decoded[0].key_frame:
            key_frames.append(index)
        # A keyframe is signalled on its first packets, never on a P frame.
        assert any(flags) == (index in (0, FORCED_KEY))
        if index in (0, FORCED_KEY):
            assert flags[0]
    assert {24, 28} <= kinds_seen  # STAP-A (SPS+PPS) and FU-A were exercised
    assert key_frames == [0, FORCED_KEY]  # independent oracle: FFmpeg's decoder


def fu_a(nal_header: int, start: bool, end: bool, data: bytes = b"\x88\x84") -> bytes:
    return bytes([(nal_header & 0xE0) | 28,
                  (0x80 if start else 0) | (0x40 if end else 0) | (nal_header & 0x1F)]) + data


def stap_a(*nals: bytes) -> bytes:
    return b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in nals)


SPS = b"\x67\x42\xe0\x1f\x8c\x8d"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x33"
SLICE = b"\x41\x9a\x02"
SEI = b"\x06\x05\x01\x80"


@pytest.mark.parametrize("payload, expected", [
    (IDR, True),
    (SPS, True),
    (PPS, False),
    (SLICE, False),
    (SEI, False),
    (stap_a(SPS, PPS), True),
    (stap_a(SEI, PPS, IDR), True),   # found past the first aggregated NAL
    (stap_a(SEI, PPS), False),
    (stap_a(SEI, SLICE), False),
    (fu_a(0x65, True, False), True),
    (fu_a(0x65, False, False), False),
    (fu_a(0x65, False, True), False),
    (fu_a(0x67, True, True), True),
    (fu_a(0x41, True, False), False),
    (b"", False),
    (b"\x7c", False),                                    # FU-A without FU header
    (b"\x78\x00\x09" + SPS, False),                      # STAP-A size beyond the packet
    (b"\x78\x00\x00" + struct.pack("!H", 6) + SPS, False),  # zero-size NAL: malformed
    (b"\x78\x00", False),
    (b"\x79" + struct.pack("!H", 6) + SPS, False),       # STAP-B is not used by WebRTC
])
def test_is_keyframe_hand_built(payload: bytes, expected: bool) -> None:
    assert is_keyframe(payload) is expected
    assert is_keyframe(bytes(12) + payload, 12) is expected  # inside an RTP packet


def test_profile_level_id_parsing() -> None:
    assert profile_level_id("profile-level-id=42e01f;packetization-mode=1") == (0x42, 0xE0, 0x1F)
    assert profile_level_id(" packetization-mode=1 ; Profile-Level-Id=640C34 ") == \
        (0x64, 0x0C, 0x34)
    assert profile_level_id("packetization-mode=1") == DEFAULT_PROFILE_LEVEL_ID
    assert profile_level_id("") == DEFAULT_PROFILE_LEVEL_ID
    for bad in ("profile-level-id=42e01", "profile-level-id=42e01fa", "profile-level-id=zze01f"):
        assert profile_level_id(bad) is None


def test_packetization_mode() -> None:
    assert packetization_mode("profile-level-id=42e01f;packetization-mode=1") == 1
    assert packetization_mode("profile-level-id=42e01f") == 0
    assert packetization_mode("packetization-mode=0") == 0
    assert packetization_mode("packetization-mode=x") == 0


@pytest.mark.parametrize("pli, profile", [
    ("42e01f", "constrained-baseline"),
    ("42c01f", "constrained-baseline"),
    ("42f00b", "constrained-baseline"),
    ("4d801f", "constrained-baseline"),
    ("58c01f", "constrained-baseline"),
    ("42001f", "baseline"),
    ("42101f", "baseline"),
    ("58801f", "baseline"),
    ("4d001f", "main"),
    ("4d401f", "main"),
    ("64001f", "high"),
    ("640c1f", "constrained-high"),
    ("f4001f", "predictive-high-444"),
    ("42e11f", None),   # reserved low bits set
    ("6e001f", None),   # High 10: not a WebRTC profile
])
def test_profile_classification(pli: str, profile: str | None) -> None:
    assert h264_profile(f"profile-level-id={pli}") == profile


def fmtp(pli: str, mode: int = 1) -> str:
    return f"level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={pli}"


@pytest.mark.parametrize("a, b, same", [
    (fmtp("42e01f"), fmtp("42e01f"), True),
    (fmtp("42e01f"), fmtp("42e034"), True),    # level is ignored
    (fmtp("42e01f"), fmtp("42c01f"), True),    # constrained-baseline equivalents
    (fmtp("42e01f"), fmtp("4d801f"), True),
    (fmtp("42e01f"), fmtp("42001f"), False),   # baseline is not constrained baseline
    (fmtp("42e01f"), fmtp("4d001f"), False),
    (fmtp("64001f"), fmtp("640c1f"), False),   # high vs constrained high
    (fmtp("64001f"), fmtp("640032"), True),
    (fmtp("42e01f", 1), fmtp("42e01f", 0), False),  # packetization modes must match
    ("packetization-mode=1", fmtp("42e01f"), True),  # absent -> libwebrtc default
    (fmtp("42e01"), fmtp("42e01"), False),     # malformed never matches
    (fmtp("6e001f"), fmtp("6e001f"), False),   # unknown profile never matches
])
def test_same_profile(a: str, b: str, same: bool) -> None:
    assert same_profile(a, b) is same
    assert same_profile(b, a) is same


def test_aiortc_offers_two_distinct_h264_profiles() -> None:
    lines = [";".join(f"{k}={v}" for k, v in codec.parameters.items())
             for codec in CODECS["video"] if codec.mimeType == "video/H264"]
    assert len(lines) == 2
    assert not same_profile(lines[0], lines[1])
    assert {h264_profile(line) for line in lines} == {"baseline", "constrained-baseline"}
