"""Call quality measured by the SFU, stored with the call when it ends, joined to results.

The freeze definition is checked on the pure detector with hand-made timelines; the whole
chain (SFU counters -> MediaBackend.call_quality -> switchboard at call end -> call_quality
table -> /api/reports/kpis) with a real call between two aiortc peers through a running
server, in which the store's downlink budget forces the staff member's video off and on.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mediaserver.aiortc_adapter import use_host_addresses
from mediaserver.call_quality import FREEZE_GAP_S, FreezeDetector
from signaling.model import Role

from .conftest import accepted_conversation
from .harness import http
from .media_peers import MediaPeer
from .test_call_media_e2e import BLUE, RED, negotiate


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


# A real call through a running server ---------------------------------------------------------
def stored_quality(db: Path, call_id: str) -> dict[str, object] | None:
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM call_quality WHERE call_id = ?", (call_id,)
                           ).fetchone()
    finally:
        conn.close()
    return None if row is None else dict(row)


@pytest.mark.timeout(120)
async def test_a_call_with_an_audio_only_fallback_is_stored_and_reported(server, connect):
    use_host_addresses(["127.0.0.1"])  # the test's own peers, like the server, on loopback
    ops = server.token(Role.OPERATOR, "ops")
    began = time.time()
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await alice.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")

    shopper_cam, staff_cam = MediaPeer("shopper", RED), MediaPeer("staff", BLUE)
    try:
        await negotiate(shopper, call_id, shopper_cam)
        await negotiate(alice, call_id, staff_cam)
        await staff_cam.wait_frames(15)
        await shopper_cam.wait_frames(15)
        call_started = time.monotonic()

        # The store's downlink drops under the video floor: alice's tablet gets audio only.
        status, body = await http("PUT", server.base_url + "/api/stores/lyon", ops,
                                  {"name": "Harmonie Lyon", "downlink_kbps": 120})
        assert status == 200, body
        await alice.expect("media.notice", code="video_paused", direction="receiving",
                           timeout=15)
        paused_frames = staff_cam.video_in()[0].frames
        status, body = await http("PUT", server.base_url + "/api/stores/lyon", ops,
                                  {"name": "Harmonie Lyon", "downlink_kbps": 5000})
        assert status == 200, body
        await alice.expect("media.notice", code="video_resumed", direction="receiving",
                           timeout=15)
        await staff_cam.wait_frames(paused_frames + 15)

        await shopper.ok("call.end", call_id=call_id)
        await alice.expect("call.ended")
        call_s = time.monotonic() - call_started
    finally:
        await shopper_cam.close()
        await staff_cam.close()
    status, body = await http("POST", f"{server.base_url}/api/conversations/{cid}/outcome",
                              ops, {"order_placed": True, "order_value": 120.0,
                                    "currency": "EUR"})
    assert status == 200, body

    # The report flushes pending writes, so the row is there once the report answers.
    status, report = await http(
        "GET", f"{server.base_url}/api/reports/kpis?from={began - 1}&to={time.time() + 1}",
        ops)
    assert status == 200, report
    f = report["figures"]
    assert (f["calls_measured"]["value"], f["calls_measured"]["conversation_ids"]) == (1, [cid])
    assert (f["calls_with_fallbacks"]["value"], f["fallback_share"]["value"]) == (1, 1.0)
    assert f["calls_with_fallbacks"]["conversation_ids"] == [cid]
    assert f["calls_with_trouble"]["value"] == 1 and f["trouble_share"]["value"] == 1.0
    assert f["conversion_with_trouble"]["value"] == 1.0
    assert f["conversion_with_trouble"]["conversation_ids"] == [cid]
    assert f["conversion_without_trouble"]["value"] is None
    assert report["thresholds"]["high_loss_fraction"] == 0.05

    q = stored_quality(server.db, call_id)
    assert q is not None, "no quality row for the call"
    assert q["audio_only_fallbacks"] >= 1  # exactly the pause we forced, unless the
    # machine was so loaded that the estimate itself dipped: never zero
    assert 0 < q["audio_only_s"] <= q["measured_s"]
    # Watched from session creation (before negotiation) to the hang-up.
    assert q["measured_s"] >= call_s - 0.2
    assert q["measured_s"] <= time.time() - began
    assert q["video_packets_forwarded"] > 30 and q["audio_packets_forwarded"] > 30
    assert q["video_freezes"] >= 0 and 0 <= q["freeze_s"] <= q["measured_s"]
    assert q["uplink_loss_fraction"] is not None and 0 <= q["uplink_loss_fraction"] <= 1
    assert 0 <= q["loss_fraction"] <= 1
    assert q["loss_fraction"] >= q["uplink_loss_fraction"]
    assert q["recorded_at"] >= began


async def test_a_call_whose_media_never_connected_has_no_quality_row(server, connect):
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    started = await alice.ok("call.accept", call_id=call_id)
    assert started["join"]["media_available"] is True  # the SFU is there, nobody joins it
    await shopper.ok("call.end", call_id=call_id)
    await alice.expect("call.ended")
    status, report = await http("GET", f"{server.base_url}/api/reports/kpis",
                                server.token(Role.OPERATOR, "ops"))
    assert status == 200, report
    assert report["figures"]["calls"]["value"] == 1
    assert report["figures"]["calls_measured"]["value"] == 0
    assert stored_quality(server.db, call_id) is None
