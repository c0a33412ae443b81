"""The freeze detector behind call quality, on hand-made timelines. The whole chain, with a
real call through a running server, is in test_call_quality_stored.py."""

from __future__ import annotations

import pytest

from mediaserver.call_quality import FREEZE_GAP_S, FreezeDetector

pytestmark = pytest.mark.unit


# The freeze detector, on hand-made timelines -------------------------------------------------
def run(detector: FreezeDetector, timeline: list[tuple[float, float, bool]]) -> None:
    for now, last_out_at, eligible in timeline:
        detector.observe(now, last_out_at, eligible)


def steady(start: float, end: float, *, eligible: bool = True,
           step: float = 0.05) -> list[tuple[float, float, bool]]:
    """Video moving all along: each look sees a packet from 20 ms earlier."""
    n = round((end - start) / step)
    return [(start + i * step, start + i * step - 0.02, eligible) for i in range(n)]


def test_steady_video_never_freezes() -> None:
    d = FreezeDetector()
    run(d, steady(1.0, 5.0))
    assert (d.freezes, d.total_frozen_s(5.0)) == (0, 0.0)


def test_a_gap_longer_than_the_threshold_is_one_freeze_with_its_length() -> None:
    assert FREEZE_GAP_S == 0.5
    d = FreezeDetector()
    run(d, steady(1.0, 2.0))  # last packet seen at 1.93
    # Nothing forwarded from 1.93 to 3.0 (looks every 50 ms), then video moves again.
    run(d, [(2.0 + i * 0.05, 1.93, True) for i in range(20)])
    assert d.freezes == 1  # counted once, however many looks see it
    run(d, steady(3.0, 4.0))  # first look after it: last packet 2.98
    assert d.freezes == 1
    assert d.total_frozen_s(4.0) == pytest.approx(2.98 - 1.93)


def test_a_gap_under_the_threshold_is_no_freeze() -> None:
    d = FreezeDetector()
    run(d, steady(1.0, 2.0))
    run(d, [(2.0 + i * 0.05, 1.93, True) for i in range(9)])  # 1.93 -> 2.40: 0.47 s
    run(d, steady(2.45, 3.0))
    assert d.freezes == 0


def test_paused_video_and_a_silent_publisher_are_not_freezes() -> None:
    d = FreezeDetector()
    run(d, steady(1.0, 2.0))
    # Audio-only fallback (or the publisher stopped sending): not eligible, for 3 s.
    run(d, [(2.0 + i * 0.05, 1.93, False) for i in range(60)])
    # Resumed at 5.0: a full threshold of grace from then, not from the last packet at 1.93.
    run(d, [(5.0 + i * 0.05, 1.93, True) for i in range(9)])  # 5.00 .. 5.40
    assert d.freezes == 0
    run(d, steady(5.45, 6.0))
    assert d.freezes == 0
    # But a keyframe that takes longer than the threshold after a resume is a freeze.
    run(d, [(6.0 + i * 0.05, 5.93, False) for i in range(4)])
    run(d, [(6.2 + i * 0.05, 5.93, True) for i in range(14)])  # 6.20 .. 6.85
    assert d.freezes == 1
    assert d.total_frozen_s(6.85) == pytest.approx(6.85 - 6.2)


def test_video_that_never_started_is_not_a_freeze() -> None:
    d = FreezeDetector()
    run(d, [(1.0 + i * 0.05, 0.0, True) for i in range(40)])
    assert d.freezes == 0


def test_a_freeze_cut_short_by_a_pause_ends_there() -> None:
    d = FreezeDetector()
    run(d, steady(1.0, 2.0))
    run(d, [(2.0 + i * 0.05, 1.93, True) for i in range(12)])  # frozen from 1.93
    d.observe(2.6, 1.93, False)  # paused at 2.6: the freeze ends there
    run(d, [(2.65 + i * 0.05, 1.93, False) for i in range(20)])
    assert d.freezes == 1
    assert d.total_frozen_s(10.0) == pytest.approx(2.6 - 1.93)
