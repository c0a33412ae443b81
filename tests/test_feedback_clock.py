"""The SFU's 50 ms feedback work rides on received packets instead of a 20 Hz timer."""

from __future__ import annotations

import itertools

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

import mediaserver.participant as participant_module
from mediaserver.aiortc_adapter import PeerAdapter, RecvSlot
from mediaserver.feedback_clock import FeedbackClock
from mediaserver.participant import Participant
from mediaserver.rtp_header import build_packet

pytestmark = pytest.mark.unit

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
PAYLOAD = bytes([0x10, 0x01, 0x02, 0x03]) + bytes(100)


def test_work_runs_once_per_interval_on_the_first_poll_when_due() -> None:
    runs: list[float] = []
    clock = FeedbackClock(runs.append, interval=0.05)
    for i in range(100):  # a packet every 7 ms for 0.7 s
        now = 10.0 + i * 0.007
        if now >= clock.due:
            clock.run(now)
    assert runs[0] == 10.0
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(0.05 <= g < 0.057 for g in gaps), gaps  # never sooner, at most a packet late
    assert len(runs) == 13


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class _Router:
    video_floor_bps = 100_000

    def __init__(self) -> None:
        self.runs: list[float] = []
        self.clock = FeedbackClock(self.runs.append, interval=0.05)

    def reconcile(self) -> None: ...

    def participant_lost(self, _p: object) -> None: ...

    def producer_added(self, *_a: object, **_k: object) -> None: ...


async def test_received_packets_drive_the_feedback_work(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Clock()
    monkeypatch.setattr(participant_module, "time", fake)
    router = _Router()
    peer = PeerAdapter()
    participant = Participant("shopper:s", router, peer)  # type: ignore[arg-type]
    participant._pt_map = {96: (RecvSlot(peer.pc.addTransceiver("video"), "video"), VP8)}
    for i in range(100):  # 100 packets, 10 ms apart: one second of media
        fake.now = 100.0 + i * 0.01
        participant.on_rtp(build_packet(96, 0, 1000 + i, 3000 * i, 1234, PAYLOAD))
    assert len(router.runs) == 20  # every 50 ms, on the packet that found it due
    assert router.runs == pytest.approx([100.0 + k * 0.05 for k in range(20)])
    fake.now += 0.02
    participant.on_rtp(b"\x80garbage")  # a bad packet is not a reason to run it
    assert len(router.runs) == 20
    await peer.close()
