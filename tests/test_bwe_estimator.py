"""The send-side estimator, the allocator and the prober, alone and in a closed loop on a
simulated bottleneck (tests/bwe_link.py): step down, step up, loss, reordered and lost
feedback, a paused receiver finding its link again."""

from __future__ import annotations

import pytest

from mediaserver.bwe.allocator import StreamDemand, allocate
from mediaserver.bwe.estimator import PacketResult, SendSideEstimator
from mediaserver.bwe.prober import FAILED_MEMORY_S, ProbeController

from .bwe_link import run, run_receiver

pytestmark = pytest.mark.unit


def step(before: float, after: float, at: float = 10.0):
    return lambda t: before if t < at else after


# The estimator on its own -------------------------------------------------------------------

def test_a_link_that_drops_is_followed_within_a_second_and_its_queue_drains() -> None:
    trace, _ = run(step(2_500_000, 300_000), 25)
    assert trace.at(9.9) > 1_500_000  # it had grown towards what we send
    assert 150_000 < trace.at(11.0) < 330_000
    late = trace.window(18, 25, trace.estimates)
    assert 200_000 < min(late) and max(late) < 360_000
    assert max(trace.window(24, 25, trace.queue_delay_s)) < 0.25


def test_reordered_feedback_gives_the_same_estimate() -> None:
    plain, _ = run(step(2_500_000, 300_000), 20)
    shuffled, _ = run(step(2_500_000, 300_000), 20, shuffle_feedback=True)
    assert plain.estimates == shuffled.estimates


def test_lost_feedback_still_finds_the_link() -> None:
    trace, _ = run(step(2_500_000, 300_000), 20, feedback_loss=0.3)
    late = trace.window(15, 20, trace.estimates)
    assert 80_000 < min(late) and max(late) < 360_000


def test_moderate_random_loss_holds_the_rate_and_heavy_loss_cuts_it() -> None:
    moderate, est = run(lambda t: 3_000_000, 20, loss=0.05)
    assert min(moderate.window(10, 20, moderate.estimates)) > 700_000, est.describe()
    heavy, est = run(lambda t: 3_000_000, 20, loss=0.25)
    assert max(heavy.window(10, 20, heavy.estimates)) < 300_000, est.describe()


def test_an_estimate_does_not_grow_far_above_what_is_acknowledged() -> None:
    """Sending little (app-limited) proves nothing about a fast link: the delay-based rate
    stops at 1.5 x what gets through, which is why probes exist."""
    est = SendSideEstimator(200_000)
    t, seq = 0.0, 0
    for _ in range(400):  # 20 s of 100 kbit/s, every packet on time
        results = []
        for _ in range(5):
            results.append(PacketResult(seq, t, 250, t + 0.02))
            seq += 1
            t += 0.02
        est.on_feedback(results, t)
    assert est.bps < 1.5 * 100_000 + 60_000, est.describe()
    est.on_probe_result(900_000, t)
    assert est.bps >= 900_000


# The allocator ------------------------------------------------------------------------------

def demands(current: int = 2) -> list[StreamDemand]:
    return [StreamDemand("audio-s", "audio", [40_000]), StreamDemand("audio-b", "audio",
                                                                      [40_000]),
            StreamDemand("shopper", "video", [90_000, 150_000, 230_000], 1, current),
            StreamDemand("bruno", "video", [90_000, 150_000, 230_000], 0, current)]


def test_audio_then_base_layers_then_higher_layers_by_priority() -> None:
    full = allocate(2_000_000, demands(), floor_bps=100_000)
    assert full.layers == {"audio-s": 0, "audio-b": 0, "shopper": 2, "bruno": 2}
    assert not full.deficient
    both_base = allocate(80_000 + 180_000 + 30_000, demands(), floor_bps=100_000)
    assert both_base.layers["shopper"] == 0 and both_base.layers["bruno"] == 0
    one_up = allocate(80_000 + 180_000 + 60_000, demands(), floor_bps=100_000)
    assert one_up.layers["shopper"] == 1 and one_up.layers["bruno"] == 0  # priority first
    assert one_up.deficient and one_up.next_step_bps > 0
    one_base = allocate(80_000 + 120_000, demands(), floor_bps=100_000)
    assert one_base.layers["shopper"] == 0 and one_base.layers["bruno"] == -1
    nothing = allocate(80_000 + 90_000, demands(), floor_bps=100_000)
    assert nothing.video_paused(demands()) and nothing.layers["audio-s"] == 0


def test_going_up_needs_headroom_going_down_does_not() -> None:
    edge = 80_000 + 90_000 + 150_000 + 5_000  # enough for shopper L1 + bruno L0, barely
    holding = allocate(edge, demands(current=1), floor_bps=100_000)
    assert holding.layers["shopper"] == 1
    rising = allocate(edge, demands(current=0), floor_bps=100_000)
    assert rising.layers["shopper"] == 0  # 10% headroom to take the step


def test_a_paused_receiver_resumes_only_well_above_the_floor() -> None:
    paused = demands(current=-1)
    stay = allocate(80_000 + 110_000, paused, floor_bps=100_000, was_paused=True)
    assert stay.video_paused(paused) and stay.next_step_bps > 0
    back = allocate(80_000 + 160_000, paused, floor_bps=100_000, was_paused=True)
    assert back.layers["shopper"] >= 0 and back.layers["bruno"] == -1


def test_unmeasured_layers_are_all_forwarded() -> None:
    fresh = [StreamDemand("v", "video", [0.0, 0.0, 0.0])]
    assert allocate(200_000, fresh, floor_bps=100_000).layers["v"] == 2


# The prober ---------------------------------------------------------------------------------

def test_probes_step_up_and_never_exceed_a_rate_that_just_failed() -> None:
    prober = ProbeController()
    first = prober.want(0.0, 300_000, 2_000_000, congested=False)
    assert first is not None and first.target_bps == 600_000  # double
    assert prober.want(0.1, 300_000, 2_000_000, congested=False) is None  # one at a time
    prober.on_results([PacketResult(i, 0.3 + i * 0.01, 1200, None) for i in range(20)], -1)
    outcome = prober.finish(1.0)
    assert outcome is not None and not outcome.success
    assert prober.want(1.1, 300_000, 2_000_000, congested=False) is None  # backing off
    again = prober.want(3.5, 300_000, 2_000_000, congested=False, recently_congested=True,
                        step_bps=100_000)
    assert again is not None and again.target_bps <= 600_000
    assert again.target_bps == pytest.approx(440_000)  # one layer's worth, near the limit
    prober.cluster = None
    later = prober.want(3.5 + FAILED_MEMORY_S + 5, 300_000, 2_000_000, congested=False)
    assert later is not None and later.target_bps == 600_000


def test_a_probe_that_gets_through_succeeds() -> None:
    prober = ProbeController()
    cluster = prober.want(0.0, 300_000, 2_000_000, congested=False)
    assert cluster is not None
    # 600 kbit/s for 0.5 s in 1200-byte packets, every one on time.
    n = int(600_000 * 0.5 / 9600)
    prober.on_results([PacketResult(i, i * 0.5 / n, 1200, 0.02 + i * 0.5 / n)
                       for i in range(n)], -1)
    outcome = prober.finish(0.9)
    assert outcome is not None and outcome.success, outcome
    assert outcome.receive_bps == pytest.approx(600_000, rel=0.1)


# The whole receiver on a simulated link -----------------------------------------------------

def link(t: float) -> float:
    """The issue's store link: fine, then 300 kbit/s, then 80, then fine again."""
    if t < 10:
        return 10_000_000
    if t < 20:
        return 300_000
    if t < 30:
        return 80_000
    return 10_000_000


def test_a_receiver_is_thinned_paused_and_recovers_on_a_changing_link() -> None:
    trace = run_receiver(link, 45, demands(current=-1), queue_bytes=20_000)
    assert trace.layer_at("shopper", 9.5) == 2 and trace.layer_at("bruno", 9.5) == 2
    # 300 kbit/s: thinned (not paused) within 3 s, the shopper's video kept.
    for t in (13.0, 16.0, 19.5):
        assert trace.layer_at("shopper", t) >= 0, t
    assert max(trace.layer_at("shopper", t) for t in (13, 16, 19.5)) <= 1
    # 80 kbit/s: audio only within 3 s.
    assert trace.layer_at("shopper", 23.0) == -1 and trace.layer_at("bruno", 23.0) == -1
    # The link is back at 30 s: the shopper at 15 fps or more within 10 s, by probing.
    back = trace.first_time(30.0, lambda layers: layers.get("shopper", -1) >= 1)
    assert back is not None and back < 10.0, trace.probes
    assert trace.layer_at("shopper", 44.0) == 2 and trace.layer_at("bruno", 44.0) == 2
    assert any(ok for _, _, ok in trace.probes) and any(not ok for _, _, ok in trace.probes)


def test_a_flapping_link_never_latches_video_off() -> None:
    def flapping(t: float) -> float:
        return 80_000 if 5 <= t < 35 and int(t - 5) % 10 < 5 else 10_000_000
    trace = run_receiver(flapping, 50, demands(current=-1), queue_bytes=20_000)
    back = trace.first_time(35.0, lambda layers: layers.get("shopper", -1) >= 1)
    assert back is not None and back < 10.0
