"""The try-on pipeline on its own: RTP in from a camera producer, RTP out of the try-on
producer through a real Consumer, decoded again; and what it does with broken input."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from benchmarks.tryon import encode_packets
from mediaserver.consumer import Consumer
from mediaserver.producer import Producer
from mediaserver.rtp_header import build_packet, parse_header
from mediaserver.tryon import Catalogue
from mediaserver.tryon.frames import bgr_from_video_frame
from mediaserver.tryon.reassembly import FrameAssembler
from mediaserver.tryon.service import TryOnService

from .media_peers import astronaut_image
from .test_tryon_media import changed

pytestmark = pytest.mark.unit


class Camera:
    """Sends pre-encoded VP8 frames as RTP packets into a Producer, at 30 fps."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.seq = 4000

    async def send(self, frames: list[list[bytes]], start: int = 0) -> None:
        for n, payloads in enumerate(frames, start):
            for i, payload in enumerate(payloads):
                self.seq += 1
                marker = int(i == len(payloads) - 1)
                self.producer.receive(build_packet(96, marker, self.seq, n * 3000, 1, payload),
                                      marker, self.seq, n * 3000, 12, time.monotonic())
            await asyncio.sleep(1 / 30)


def decode_all(packets: list[bytes]) -> list[np.ndarray]:
    """What a receiver decodes from the consumer's packets."""
    assembler, decoder, images = FrameAssembler(), Vp8Decoder(), []
    for packet in packets:
        header = parse_header(packet)
        assert header is not None
        _pt, marker, seq, ts, _ssrc, offset = header
        payload = packet[offset:]
        key = payload[0] & 0x10 and not vp8_depayload(payload)[0] & 1
        for frame in assembler.push(seq, marker, ts, payload, bool(key), 0.0) or []:
            data = b"".join(vp8_depayload(p) for p in frame.payloads)
            images += [bgr_from_video_frame(f)
                       for f in decoder.decode(JitterFrame(data, frame.timestamp))]
    return images


async def test_pipeline_draws_on_frames_and_survives_garbage() -> None:
    photo = astronaut_image()
    frames = encode_packets([photo] * 40)
    service = TryOnService(Catalogue.with_samples())
    camera = Producer("shopper:s1", "video", 1, "video/vp8", 96, 90_000, None,
                      lambda _p: None)
    stream = service.open_stream("shopper:s1", "video/vp8")
    try:
        stream.set_garment("sample-tshirt")
        stream.follow(camera, time.monotonic())
        sent: list[bytes] = []
        receiver = Consumer("shopper:s1", "video", 777, 100, 90_000, sent.append)
        receiver.bind(stream.producer, time.monotonic())
        source = Camera(camera)
        await source.send(frames[:30])
        for _ in range(100):
            if stream.frames_out >= 30:
                break
            await asyncio.sleep(0.05)
        images = decode_all(sent)
        assert len(images) >= 20, stream.describe()
        assert all(parse_header(p)[4] == 777 for p in sent[:5])  # the receiver's SSRC
        assert changed(images[-1], photo).mean() > 0.05, "the garment is drawn"

        # Garbage that claims to be a keyframe: counted, never raised, decoding restarts
        # at the publisher's next keyframe (requested through the camera producer).
        requests = camera.keyframe_requests
        camera.keyframe_requested_at = -1e9  # let the throttle through for this check
        bogus = [[bytes([0x90, 0x80, 0x81, 0x23]) + bytes([0x00]) + b"\xff" * 300]]
        await source.send(bogus * 3, start=100)
        for _ in range(100):
            if stream.decode_errors:
                break
            await asyncio.sleep(0.05)
        assert stream.decode_errors >= 1, stream.describe()
        assert camera.keyframe_requests > requests
        out_before = stream.frames_out
        await source.send(frames[:5], start=200)  # frames[0] is a keyframe
        for _ in range(100):
            if stream.frames_out >= out_before + 4:
                break
            await asyncio.sleep(0.05)
        assert stream.frames_out >= out_before + 4, stream.describe()
    finally:
        service.retire(stream)
        service.close()
    assert camera.tap is None and not stream.producer.consumers
