"""Padding and RTX probes from browsers: they must neither freeze nor corrupt a stream.

Chromium probes bandwidth with padding-only packets on its RTX stream. Reading their padding
as an "original sequence number" once jumped the stream's sequence space, after which every
real packet looked stale and was dropped: video froze while audio went on.
"""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from mediaserver.aiortc_adapter import PeerAdapter, RecvSlot
from mediaserver.consumer import Consumer
from mediaserver.feedback_clock import FeedbackClock
from mediaserver.participant import Participant
from mediaserver.rtp_header import build_packet, parse_header

pytestmark = pytest.mark.unit

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                            parameters={"apt": 96})
MEDIA_SSRC, RTX_SSRC = 1111, 2222
VP8_PAYLOAD = bytes([0x10, 0x01, 0x02, 0x03]) + bytes(100)  # S=1, not a keyframe
KEYFRAME = bytes([0x10, 0x00, 0x00, 0x00]) + bytes(100)  # S=1 and VP8 P bit 0: keyframe


class _Router:
    video_floor_bps = 100_000
    clock = FeedbackClock(lambda _now: None)

    def reconcile(self) -> None: ...

    def participant_lost(self, _p: object) -> None: ...

    def producer_added(self, *_a: object, **_k: object) -> None: ...


def with_padding(packet: bytes, pad: int) -> bytes:
    return bytes((packet[0] | 0x20,)) + packet[1:] + bytes(pad - 1) + bytes((pad,))


async def make(first: int = 1000) -> tuple[Participant, list[bytes]]:
    peer = PeerAdapter()
    participant = Participant("shopper:s", _Router(), peer)  # type: ignore[arg-type]
    slot = RecvSlot(peer.pc.addTransceiver("video"), "video")
    participant._pt_map = {96: (slot, VP8), 97: (slot, RTX)}
    sent: list[bytes] = []
    keyframe = KEYFRAME
    participant.on_rtp(build_packet(96, 1, first - 1, 6000, MEDIA_SSRC, keyframe))  # creates it
    producer = participant.producers[MEDIA_SSRC]
    consumer = Consumer("shopper:s", "video", 5555, 100, 90000, sent.append)
    consumer.bind(producer, 0.0)
    participant.on_rtp(build_packet(96, 1, first, 9000, MEDIA_SSRC, KEYFRAME))  # starts it
    return participant, sent


async def test_rtx_padding_probe_does_not_freeze_the_stream() -> None:
    # Above 32768, a zero "original sequence number" (Chromium pads with zeros) would read as
    # a jump ahead by up to half the sequence space.
    participant, sent = await make(first=40000)
    for seq in range(40001, 40005):
        participant.on_rtp(build_packet(96, 0, seq, 12000, MEDIA_SSRC, VP8_PAYLOAD))
    for rtx_seq in range(7, 12):  # a burst of probes: padding only, zeros then the count
        participant.on_rtp(with_padding(build_packet(97, 0, rtx_seq, 12000, RTX_SSRC, b""), 220))
    # And a bogus "retransmission" of a sequence number far from the stream.
    participant.on_rtp(build_packet(97, 0, 12, 12000, RTX_SSRC, bytes(2) + VP8_PAYLOAD))
    for seq in range(40005, 40010):
        participant.on_rtp(build_packet(96, 0, seq, 15000, MEDIA_SSRC, VP8_PAYLOAD))
    out = [parse_header(p)[2] for p in sent]
    assert len(out) == 10, out  # 40000..40009: nothing lost to the probes, nothing extra
    assert out == [(out[0] + i) & 0xFFFF for i in range(10)], out


async def test_real_retransmission_fills_the_gap() -> None:
    participant, sent = await make()
    for seq in (1001, 1002, 1004):
        participant.on_rtp(build_packet(96, 0, seq, 12000, MEDIA_SSRC, VP8_PAYLOAD))
    # RFC 4588: original seq 1003 leads the payload; padded, as RTX packets may be.
    rtx = with_padding(build_packet(97, 0, 50, 12000, RTX_SSRC,
                                    (1003).to_bytes(2, "big") + VP8_PAYLOAD), 16)
    participant.on_rtp(rtx)
    seqs = sorted(parse_header(p)[2] for p in sent)
    assert seqs == list(range(seqs[0], seqs[0] + 5))  # 1000..1004 all out, one seq space
    recovered = sent[-1]
    assert recovered[0] & 0x20 == 0  # the RTX padding is not passed on
    assert recovered[parse_header(recovered)[5]:] == VP8_PAYLOAD


async def test_padded_media_packet_reaches_receivers_without_its_padding() -> None:
    participant, sent = await make()
    participant.on_rtp(with_padding(build_packet(96, 0, 1001, 12000, MEDIA_SSRC, VP8_PAYLOAD), 40))
    last = sent[-1]
    header = parse_header(last)
    assert last[0] & 0x20 == 0
    assert last[header[5]:] == VP8_PAYLOAD
