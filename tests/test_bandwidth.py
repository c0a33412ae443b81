"""Bandwidth decisions (pure): estimates, caps, store shares, audio-only hysteresis."""

from __future__ import annotations

import pytest

from mediaserver.bandwidth import (
    MIN_BPS,
    BandwidthEstimate,
    VideoGate,
    publisher_cap,
    session_share,
)


def test_loss_cuts_the_estimate_and_low_loss_grows_it() -> None:
    e = BandwidthEstimate(1_000_000)
    e.on_loss(0.20)
    assert e.bps == pytest.approx(900_000)  # 1 - 0.5 * 0.2
    e.on_loss(0.05)
    assert e.bps == pytest.approx(900_000)  # hold between 2% and 10%
    e.on_loss(0.0)
    assert e.bps == pytest.approx(972_000)
    for _ in range(200):
        e.on_loss(0.9)
    assert e.bps == MIN_BPS


def test_remb_bounds_the_estimate() -> None:
    e = BandwidthEstimate(2_000_000)
    e.on_remb(300_000)
    assert e.bps == 300_000
    e.on_remb(5_000_000)
    assert e.bps == 2_000_000


def test_publisher_cap_is_the_tightest_receiver_within_the_store_share() -> None:
    assert publisher_cap([], audio_bps=40_000) is None
    assert publisher_cap([1_000_000, 400_000], audio_bps=40_000) == 360_000
    assert publisher_cap([1_000_000], audio_bps=40_000, share_bps=240_000) == 200_000
    assert publisher_cap([10_000], audio_bps=40_000) == MIN_BPS


def test_store_capacity_is_shared_equally() -> None:
    assert session_share(None, 3) is None
    assert session_share(3_000_000, 3) == 1_000_000
    assert session_share(3_000_000, 0) == 3_000_000


def test_video_gate_has_hysteresis() -> None:
    gate = VideoGate(100_000)
    assert gate.update(150_000) is None
    assert gate.update(90_000) is True and gate.paused
    assert gate.update(120_000) is None and gate.paused  # not yet 1.5x the floor
    assert gate.update(150_000) is False and not gate.paused
