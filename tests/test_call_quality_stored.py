"""Call quality stored with the call when it ends, joined to results: the whole chain (SFU
counters -> MediaBackend.call_quality -> switchboard at call end -> call_quality table ->
/api/reports/kpis) with a real call between two aiortc peers through a running server, in
which the store's downlink budget forces the staff member's video off and on. The freeze
detector alone is in test_call_quality.py.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mediaserver.aiortc_adapter import use_host_addresses
from signaling.model import Role

from .conftest import accepted_conversation
from .harness import http
from .media_peers import MediaPeer
from .test_call_media_e2e import BLUE, RED, negotiate

pytestmark = pytest.mark.integration


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
