"""Temporal layers (VP8 L1T3): a constrained receiver gets fewer layers, still decodable,
at a lower frame rate, while another receiver of the same publisher gets them all.

The publisher is a real L1T3 stream (libvpx's 3-layer pattern, sent as raw RTP with the
full payload descriptor); receivers are aiortc peers that decode it. The constraint is the
store's downlink budget, which bounds what the SFU estimates for that store's staff.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest

from benchmarks.layered_vp8 import PATTERN, LayeredPublisher, encode_l1t3, moving_frames
from mediaserver.backend import SfuBackend
from mediaserver.bandwidth import StoreBudget
from signaling.media import MediaSessionSpec
from signaling.model import CallKind

from .media_peers import MediaPeer
from .test_sfu_forwarding import Session

pytestmark = pytest.mark.integration

BUDGETS: dict[str, StoreBudget] = {}
SOURCE = moving_frames(240)
SOURCE_PIXELS = [f.to_ndarray(format="bgr24").astype(np.int16) for f in SOURCE]
FRAMES = encode_l1t3(SOURCE, bitrate=1_000_000)


@pytest.fixture
async def layered_call() -> AsyncIterator[tuple[Session, MediaPeer, MediaPeer]]:
    BUDGETS.clear()
    backend = SfuBackend(host_addresses=["127.0.0.1"], video_floor_kbps=50,
                         store_budget=lambda store: BUDGETS.get(store, StoreBudget()))
    await backend.start()
    await backend.create_session(MediaSessionSpec(
        "ms_layers", "cnv_layers", "call_layers", CallKind.VIDEO, "lyon", ()))
    session = Session(backend, "ms_layers")
    publisher = LayeredPublisher(FRAMES)
    # Receivers send audio only, so the only video is the layered stream.
    full = MediaPeer("shopper", video=False)
    constrained = MediaPeer("staff", video=False)
    await session.join("staff:dave", publisher)  # type: ignore[arg-type]
    await session.join("shopper:s1", full)
    await session.join("staff:alice", constrained)
    yield session, full, constrained
    for peer in (full, constrained, publisher):
        await peer.close()
    await backend.stop()


def _source_index(frame: object) -> tuple[int, float]:
    """Which source frame a decoded picture is, and how far from it (mean abs diff)."""
    image = frame.to_ndarray(format="bgr24").astype(np.int16)  # type: ignore[attr-defined]
    diffs = [float(np.abs(image - src).mean()) for src in SOURCE_PIXELS]
    best = int(np.argmin(diffs))
    return best, diffs[best]


async def _fps(peer: MediaPeer, seconds: float = 3.0) -> float:
    track = peer.video_in()[0]
    before = track.frames
    await asyncio.sleep(seconds)
    return (track.frames - before) / seconds


async def _wait_layer(session: Session, receiver: str, layer: int | None) -> None:
    consumer = session.router().participants[receiver].consumers[("staff:dave", "video")]
    for _ in range(100):
        if consumer.forwarded_layer == layer:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{receiver} forwards layer {consumer.forwarded_layer}, not {layer}")


async def test_constrained_receiver_gets_base_layer_others_all(
        layered_call: tuple[Session, MediaPeer, MediaPeer]) -> None:
    session, full, constrained = layered_call
    await full.wait_frames(20)
    await constrained.wait_frames(20)
    router = session.router()
    producer = router.participants["staff:dave"].producers
    assert any(p.layered for p in producer.values())

    # The store's downlink leaves its staff ~200 kbps of video: the base layer (~140
    # kbps) fits, the base plus TL1 (~250 kbps) does not.
    BUDGETS["lyon"] = StoreBudget(downlink_bps=240_000)
    await _wait_layer(session, "staff:alice", 0)
    await asyncio.sleep(0.5)  # frames already in flight
    full_fps, constrained_fps = await asyncio.gather(_fps(full), _fps(constrained))
    assert constrained_fps < 0.5 * full_fps, (constrained_fps, full_fps)
    assert constrained_fps > 0.1 * full_fps, (constrained_fps, full_fps)

    # What the constrained receiver decodes are real pictures, and only base-layer ones.
    index, diff = _source_index(constrained.video_in()[0].last)
    assert PATTERN[index % 4] == 0 and diff < 12, (index, diff)
    index, diff = _source_index(full.video_in()[0].last)
    assert diff < 12, (index, diff)

    alice = router.participants["staff:alice"].consumers[("staff:dave", "video")]
    shopper = router.participants["shopper:s1"].consumers[("staff:dave", "video")]
    # Dropped packets leave no sequence gaps: the receiver never asks for them.
    assert alice.nacks == 0 and alice.retransmissions == 0
    assert shopper.forwarded_layer is None  # never thinned: plain forwarding
    listed = {r["from"]: r for r in router.participants["staff:alice"].describe()["receiving"]}
    assert listed["staff:dave"]["forwarded_layer"] == 0

    # Capacity comes back: all layers again, at full frame rate.
    BUDGETS.clear()
    await _wait_layer(session, "staff:alice", 2)
    await asyncio.sleep(0.5)
    full_fps, constrained_fps = await asyncio.gather(_fps(full), _fps(constrained))
    assert constrained_fps > 0.8 * full_fps, (constrained_fps, full_fps)
    assert alice.layer_switches >= 2
    # The constrained receiver was told, on each change (for its quality display); the
    # other receiver, never thinned, was told nothing.
    told = [(pid, m["layer"]) for pid, m in session.notes if m["type"] == "media.layer"]
    assert ("staff:alice", 0) in told and told[-1] == ("staff:alice", None), told
    assert all(pid == "staff:alice" for pid, _ in told), told
    assert all(a != b for a, b in itertools.pairwise(told)), told
    index, diff = _source_index(constrained.video_in()[0].last)
    assert diff < 12, (index, diff)
