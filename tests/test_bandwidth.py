"""Bandwidth decisions (pure): estimates, caps, store shares, audio-only hysteresis."""

from __future__ import annotations

import pytest

from mediaserver.bandwidth import (
    MIN_BPS,
    PROBE_FAILED_WITHIN_S,
    PROBE_FIRST_S,
    PROBE_MAX_S,
    BandwidthEstimate,
    VideoGate,
    app_limited,
    congested,
    layered_publisher_cap,
    pick_temporal_layer,
    publisher_cap,
    session_share,
)

pytestmark = pytest.mark.unit


def test_loss_cuts_the_estimate_and_low_loss_grows_it() -> None:
    e = BandwidthEstimate(1_000_000)
    e.on_loss(0.20)
    assert e.bps == pytest.approx(900_000)  # 1 - 0.5 * 0.2
    e.on_loss(0.20)
    assert e.bps == pytest.approx(900_000)  # one report of grace after a cut
    e.on_loss(0.05)
    assert e.bps == pytest.approx(900_000)  # hold between 2% and 10%
    e.on_loss(0.0)
    assert e.bps == pytest.approx(972_000)
    for _ in range(200):
        e.on_loss(0.9)
    assert e.bps == MIN_BPS


def test_heavy_loss_drops_the_estimate_to_what_arrived() -> None:
    e = BandwidthEstimate(1_000_000)
    e.on_loss(0.40, delivered_bps=450_000)
    assert e.bps == 450_000  # not 800 kbps: the link carried 450 kbps
    e.on_loss(0.05, delivered_bps=100_000)
    assert e.bps == 450_000  # moderate loss: hold, whatever was delivered
    e.on_loss(0.40, delivered_bps=50_000)
    assert e.bps == pytest.approx(180_000)  # at most halved per report (360k / 2)
    e.on_loss(0.40, delivered_bps=50_000)
    assert e.bps == pytest.approx(180_000)  # the report after a cut is about before it
    e.on_loss(0.40, delivered_bps=0)
    assert e.bps == pytest.approx(144_000)  # nothing measured: proportional cut only


def test_temporal_layer_is_the_highest_that_fits_with_headroom_to_go_up() -> None:
    rates = [140_000, 250_000, 480_000]  # cumulative: TL0, TL0+1, all
    assert pick_temporal_layer(rates, 1_000_000, current=2) == 2
    assert pick_temporal_layer(rates, 300_000, current=2) == 1
    assert pick_temporal_layer(rates, 100_000, current=2) == 0  # base layer at the least
    assert pick_temporal_layer(rates, 500_000, current=1) == 1  # 480k > 0.9 * 500k
    assert pick_temporal_layer(rates, 540_000, current=1) == 2
    assert pick_temporal_layer([0.0, 0.0, 0.0], 10_000, current=0) == 2  # nothing measured


def test_layered_publisher_follows_its_best_receiver_while_the_worst_keeps_the_base() -> None:
    cap = layered_publisher_cap([2_000_000, 300_000], audio_bps=40_000, base_layer_share=0.3)
    assert cap == pytest.approx((300_000 - 40_000) / 0.3)  # 867k: TL0 still fits 260k
    assert layered_publisher_cap([2_000_000, 1_500_000], audio_bps=40_000,
                                 base_layer_share=0.3) == 1_960_000
    assert layered_publisher_cap([2_000_000], audio_bps=40_000, base_layer_share=0.3,
                                 share_bps=500_000) == 460_000
    assert layered_publisher_cap([], audio_bps=40_000, base_layer_share=0.3) is None


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
    assert gate.update(90_000) is None and not gate.paused  # one dip: a keyframe burst?
    assert gate.update(150_000) is None
    assert gate.update(90_000) is None
    assert gate.update(90_000) is True and gate.paused  # two reports in a row
    assert gate.update(120_000, congested=True) is None and gate.paused  # not yet 1.5x
    assert gate.update(150_000, congested=True) is False and not gate.paused


def test_app_limited_estimate_is_not_a_weak_link() -> None:
    # Chromium's REMB when we send it 77 kbps of a low-complexity camera plus audio.
    assert app_limited(125_714, 77_000, 0.0)
    assert not app_limited(125_714, 110_000, 0.0)  # we send about what it says: binding
    assert not app_limited(125_714, 77_000, 0.05)  # losing packets: a real limit
    assert not app_limited(None, 0.0, 0.0)  # no REMB: the loss estimate decides


def test_gate_ignores_app_limited_estimates_and_probes_back_with_backoff() -> None:
    gate = VideoGate(100_000)
    for _ in range(5):
        assert gate.update(85_000, 0.0, app_limited=True) is None and not gate.paused
    # A real low estimate pauses. Audio alone then says nothing about video: once the link
    # shows no trouble for PROBE_FIRST_S, video is tried again.
    gate.update(85_000, 0.0)
    assert gate.update(85_000, 1.0) is True and gate.paused
    assert gate.update(30_000, 1.0 + PROBE_FIRST_S - 0.5) is None
    assert gate.update(30_000, 1.0 + PROBE_FIRST_S, congested=True) is None  # still losing
    assert gate.update(30_000, 1.0 + PROBE_FIRST_S + 1) is False  # probe
    # The link really is weak: paused again soon, so the next probe waits twice as long.
    t = 1.0 + PROBE_FIRST_S + 3.0
    gate.update(60_000, t - 1)
    assert gate.update(60_000, t) is True
    assert gate.update(30_000, t + PROBE_FIRST_S) is None
    t += 2 * PROBE_FIRST_S
    assert gate.update(30_000, t) is False
    for _ in range(10):  # failing over and over: never more often than PROBE_MAX_S
        gate.update(60_000, t + 1)
        t += 2.0
        assert gate.update(60_000, t) is True
        t += gate.probe_after_s
        assert gate.update(30_000, t) is False
    assert gate.probe_after_s == PROBE_MAX_S
    # Video that holds for a while resets the wait.
    t += 3 * PROBE_FAILED_WITHIN_S
    gate.update(60_000, t - 1)
    assert gate.update(60_000, t) is True and gate.probe_after_s == PROBE_FIRST_S
    # A measured recovery (1.5x the floor) resumes at once, congested or not.
    assert gate.update(150_000, t + 0.1, congested=True) is False


def test_congestion_is_loss_or_a_remb_under_what_is_sent() -> None:
    assert congested(26_824, 24_600 + 40_000, 0.0)  # REMB under what it gets
    assert not congested(26_824, 24_600, 0.0)  # audio only, and it copes
    assert congested(1_000_000, 24_600, 0.05)
    assert not congested(None, 500_000, 0.0)
