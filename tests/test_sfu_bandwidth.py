"""Bandwidth adaptation with real aiortc peers: REMB caps reach the publisher, a store's
capacity bounds its sessions, and a receiver below the floor falls back to audio only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from mediaserver.adaptation import AUDIO_BPS
from mediaserver.backend import SfuBackend
from mediaserver.bandwidth import StoreBudget
from signaling.media import MediaSessionSpec
from signaling.model import CallKind

from .media_peers import MediaPeer
from .test_sfu_forwarding import BLUE, RED, Session

pytestmark = pytest.mark.integration

BUDGETS: dict[str, StoreBudget] = {}


@pytest.fixture
async def backend() -> AsyncIterator[SfuBackend]:
    BUDGETS.clear()
    backend = SfuBackend(host_addresses=["127.0.0.1"], video_floor_kbps=150,
                         store_budget=lambda store: BUDGETS.get(store, StoreBudget()))
    await backend.start()
    yield backend
    await backend.stop()


async def call(backend: SfuBackend, session_id: str, store: str) -> tuple[Session, MediaPeer,
                                                                            MediaPeer]:
    await backend.create_session(MediaSessionSpec(
        session_id, f"cnv_{session_id}", f"call_{session_id}", CallKind.VIDEO, store, ()))
    session = Session(backend, session_id)
    shopper = MediaPeer(f"shopper-{session_id}", RED, noise=True)
    staff = MediaPeer(f"staff-{session_id}", BLUE)
    await session.join("shopper:s", shopper)
    await session.join("staff:a", staff)
    await staff.wait_frames(5)
    return session, shopper, staff


def shopper_cap(session: Session) -> float:
    producer = next(p for p in session.router().participants["shopper:s"].producers.values()
                    if p.kind == "video")
    return session.router().caps[producer.ssrc]


async def video_bitrate(session: Session, participant_id: str, seconds: float = 2.0) -> float:
    producer = next(p for p in session.router().participants[participant_id].producers.values()
                    if p.kind == "video")
    start, t0 = producer.octets, time.monotonic()
    await asyncio.sleep(seconds)
    return (producer.octets - start) * 8 / (time.monotonic() - t0)


async def test_store_downlink_budget_caps_the_shoppers_camera(backend: SfuBackend) -> None:
    BUDGETS["small"] = StoreBudget(downlink_bps=340_000)
    capped, *peers_a = await call(backend, "ms_small", "small")
    free, *peers_b = await call(backend, "ms_free", "big")
    try:
        await asyncio.sleep(4)  # REMB every second; the encoder follows within a few frames
        capped_bps = await video_bitrate(capped, "shopper:s")
        free_bps = await video_bitrate(free, "shopper:s")
        # The cap the server sent: the store share minus audio.
        assert shopper_cap(capped) == pytest.approx(340_000 - AUDIO_BPS)
        assert capped_bps < 420_000, capped_bps
        assert free_bps > 1.4 * capped_bps, (free_bps, capped_bps)
    finally:
        for peer in (*peers_a, *peers_b):
            await peer.close()


async def test_store_budget_is_shared_among_its_sessions(backend: SfuBackend) -> None:
    BUDGETS["lyon"] = StoreBudget(downlink_bps=1_200_000)
    first, *a = await call(backend, "ms_1", "lyon")
    try:
        await asyncio.sleep(1.5)
        alone = shopper_cap(first)
        _second, *b = await call(backend, "ms_2", "lyon")
        try:
            await asyncio.sleep(1.5)
            assert alone == pytest.approx(1_200_000 - AUDIO_BPS)
            assert shopper_cap(first) == pytest.approx(600_000 - AUDIO_BPS)  # 1.2M / 2 - audio
        finally:
            for peer in b:
                await peer.close()
    finally:
        for peer in a:
            await peer.close()


async def test_audio_only_fallback_and_recovery(backend: SfuBackend) -> None:
    session, shopper, staff = await call(backend, "ms_low", "tiny")
    try:
        received = staff.video_in()[0]
        BUDGETS["tiny"] = StoreBudget(downlink_bps=120_000)  # under the 150 kbps floor
        for _ in range(60):
            if any(m.get("code") == "video_paused" for _, m in session.notes):
                break
            await asyncio.sleep(0.1)
        told = {(pid, m["code"]) for pid, m in session.notes if m["type"] == "media.notice"}
        assert ("staff:a", "video_paused") in told  # the receiver
        assert ("shopper:s", "video_paused") in told  # and the publisher
        await asyncio.sleep(0.5)
        frozen = received.frames
        audio = staff.audio_in()[0].frames
        await asyncio.sleep(1.0)
        assert received.frames <= frozen + 1, "no video while paused"
        assert staff.audio_in()[0].frames > audio + 20, "audio keeps flowing"

        BUDGETS["tiny"] = StoreBudget(downlink_bps=2_000_000)
        for _ in range(60):
            if any(m.get("code") == "video_resumed" for _, m in session.notes):
                break
            await asyncio.sleep(0.1)
        await staff.wait_frames(frozen + 15)
        consumer = session.router().participants["staff:a"].consumers[("shopper:s", "video")]
        stats = next(s for s in await staff.inbound_stats() if s.ssrc == consumer.ssrc)
        assert stats.packetsLost < 5, "resumed without a sequence gap"
    finally:
        await shopper.close()
        await staff.close()


async def test_stream_added_while_on_audio_only_stays_paused(backend: SfuBackend) -> None:
    session, shopper, staff = await call(backend, "ms_paused_join", "tight")
    colleague = MediaPeer("colleague", BLUE)
    try:
        BUDGETS["tight"] = StoreBudget(downlink_bps=120_000)  # under the 150 kbps floor
        receiver = session.router().participants["staff:a"]
        for _ in range(60):
            if receiver.video_paused:
                break
            await asyncio.sleep(0.1)
        assert receiver.video_paused
        # A colleague joins the call while staff:a is on audio only: their video must not
        # reach staff:a until its link recovers.
        await session.join("staff:c", colleague)
        for _ in range(100):
            if ("staff:c", "video") in receiver.consumers:
                break
            await asyncio.sleep(0.1)
        added = receiver.consumers[("staff:c", "video")]
        assert added.paused
        await asyncio.sleep(1.0)
        assert added.packets == 0
    finally:
        await colleague.close()
        await shopper.close()
        await staff.close()


async def chromium_like_remb(peer: MediaPeer, delivered: Callable[[], int]) -> None:
    """Send the REMB a browser sends when the incoming stream under-uses the link: its
    receive-side estimate stays near 1.5x the incoming rate + 10 kbps. (aiortc itself only
    estimates with abs-send-time, which forwarded packets do not carry, and its stats have
    no byte counts: `delivered` is what the server sent it, all of which arrives here.)"""
    receiver = next(t.receiver for t in peer.pc.getTransceivers() if t.kind == "video")
    last = delivered()
    while True:
        await asyncio.sleep(1.0)
        now = delivered()
        bps = 1.5 * (now - last) * 8 + 10_000
        last = now
        await receiver._send_rtcp(RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=receiver._RTCRtpReceiver__rtcp_ssrc or 1, media_ssrc=0,
            fci=pack_remb_fci(int(bps), [])))


async def test_a_quiet_camera_is_not_mistaken_for_a_weak_link(backend: SfuBackend) -> None:
    """A flat picture makes tiny VP8 frames, and a browser's REMB only follows what it gets:
    an estimate under the floor that says nothing about the link. Pausing on it would
    latch, since audio alone keeps that REMB low for ever (seen with Chromium's fake camera
    in the browser tests)."""
    await backend.create_session(MediaSessionSpec(
        "ms_quiet", "cnv_quiet", "call_quiet", CallKind.VIDEO, "quiet", ()))
    session = Session(backend, "ms_quiet")
    shopper = MediaPeer("shopper-quiet", RED)  # no noise: a few hundred bytes a frame
    staff = MediaPeer("staff-quiet", BLUE)
    remb = None
    try:
        await session.join("shopper:s", shopper)
        await session.join("staff:a", staff)
        await staff.wait_frames(5)
        receiver = session.router().participants["staff:a"]
        remb = asyncio.ensure_future(chromium_like_remb(staff, lambda: sum(
            c.octets + 12 * c.packets for c in receiver.consumers.values())))
        for _ in range(30):  # the REMB settles on what the staff member gets
            estimate = receiver.bandwidth.remb.remb_bps
            if estimate is not None and estimate < backend.video_floor_bps:
                break
            await asyncio.sleep(0.5)
        assert receiver.bandwidth.remb.remb_bps is not None and \
            receiver.bandwidth.remb.remb_bps < backend.video_floor_bps, \
            "the REMB never went under the floor: this scenario no longer tests anything"
        await asyncio.sleep(3)  # three more estimates at that level
        assert not receiver.video_paused
        assert not [m for _, m in session.notes if m.get("code") == "video_paused"]
        frames = staff.video_in()[0].frames
        await staff.wait_frames(frames + 30)
    finally:
        if remb is not None:
            remb.cancel()
        await shopper.close()
        await staff.close()
