"""Authenticated garbage: packets that pass SRTP (so they come from the participant itself)
but whose RTP or RTCP inside is mangled. The handlers must count and drop them, never raise
(a raise would be logged as a server bug, see aiortc_adapter), and the call must recover.

The mutations start from the call's own packets (the publisher's RTP history, and the
RTCP a receiver sends: reports, PLI, FIR, REMB, NACK), with a fixed seed.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from aiortc.rtp import (
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from .media_peers import MediaPeer
from .test_sfu_forwarding import (
    BLUE,
    RED,
    session,  # noqa: F401  (fixture)
)
from .test_sfu_forwarding import Session as CallSession

pytestmark = pytest.mark.integration

MUTATIONS = 4000


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    kind = rng.randrange(6)
    if kind == 0:  # a few flipped bits
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncated anywhere
        del data[rng.randrange(len(data) + 1):]
    elif kind == 2:  # the header kept, the rest random
        data[12:] = rng.randbytes(rng.randrange(40))
    elif kind == 3:  # any first byte: version, padding, extension, CSRC count
        data[0] = rng.randrange(256)
    elif kind == 4:  # trailing bytes
        data += rng.randbytes(rng.randrange(1, 300))
    else:  # one byte anywhere, maybe with the padding bit
        data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.5:
            data[0] |= 0x20
    return bytes(data)


def receiver_feedback(consumers: list) -> list[bytes]:  # type: ignore[type-arg]
    packets = [bytes(RtcpRrPacket(ssrc=7, reports=[RtcpReceiverInfo(
        ssrc=c.ssrc, fraction_lost=3, packets_lost=5, highest_sequence=c.last_out_seq,
        jitter=40, lsr=1, dlsr=2) for c in consumers])),
        bytes(RtcpSrPacket(ssrc=7, sender_info=RtcpSenderInfo(1, 2, 3, 4)))]
    for c in consumers:
        packets += [bytes(RtcpPsfbPacket(fmt=1, ssrc=7, media_ssrc=c.ssrc)),
                    bytes(RtcpPsfbPacket(fmt=4, ssrc=7, media_ssrc=0,
                                         fci=c.ssrc.to_bytes(4, "big") + bytes(4))),
                    bytes(RtcpPsfbPacket(fmt=15, ssrc=7, media_ssrc=0,
                                         fci=pack_remb_fci(300_000, [c.ssrc]))),
                    bytes(RtcpRtpfbPacket(fmt=1, ssrc=7, media_ssrc=c.ssrc,
                                          lost=[(c.last_out_seq - 3) & 0xFFFF]))]
    return packets


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_mangled_packets_are_dropped_and_the_call_recovers(
        session: CallSession, codec: str) -> None:  # noqa: F811
    shopper = MediaPeer("shopper", RED, codec=codec)
    staff = MediaPeer("staff", BLUE, codec=codec)
    await session.join("shopper:s1", shopper)
    await session.join("staff:alice", staff)
    await staff.wait_frames(10)
    publisher = session.router().participants["shopper:s1"]
    receiver = session.router().participants["staff:alice"]
    rtp = [entry[1] for producer in publisher.producers.values()
           for entry in producer.history if entry is not None]
    rtcp = receiver_feedback(list(receiver.consumers.values()))
    # The publisher's sender reports, forwarded into each receiver's timestamp space.
    reports = [bytes(RtcpSrPacket(ssrc=p.ssrc, sender_info=RtcpSenderInfo(
        ntp_timestamp=0xE1D2C3B4A5968778, rtp_timestamp=123456, packet_count=10,
        octet_count=1000))) for p in publisher.producers.values()]
    rng = random.Random(20261206)
    for i in range(MUTATIONS):
        publisher.on_rtp(mutate(rng, rng.choice(rtp)))  # raises: the test fails here
        receiver.on_rtcp(mutate(rng, rng.choice(rtcp)))
        publisher.on_rtcp(mutate(rng, rng.choice(reports)))
        if i % 200 == 0:
            await asyncio.sleep(0)  # let real media interleave
    assert publisher.bad_packets > 0 and receiver.bad_packets > 0
    assert publisher.peer.handler_errors == receiver.peer.handler_errors == 0

    # Mangled payloads may have reached the staff's decoder. A browser's decoder asks for a
    # keyframe when a frame fails (aiortc's does not): do what it would.
    await asyncio.sleep(0.6)  # past the keyframe request throttle
    video = next(t.receiver for t in staff.pc.getTransceivers() if t.kind == "video")
    stream = receiver.consumers[("shopper:s1", "video")].ssrc
    await video._send_rtcp(RtcpPsfbPacket(fmt=1, ssrc=video._RTCRtpReceiver__rtcp_ssrc or 1,
                                          media_ssrc=stream))
    received = staff.video_in()[0]
    start = received.frames
    for _ in range(100):
        if received.frames >= start + 5:
            break
        await asyncio.sleep(0.05)
    assert received.frames >= start + 5, "video recovers after the garbage"
