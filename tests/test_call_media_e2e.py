"""Escalation to a real video call through the running server: signalling over WebSocket,
media through the SFU, decoded by aiortc peers on both sides."""

from __future__ import annotations

import asyncio

import pytest

from mediaserver.aiortc_adapter import use_host_addresses
from signaling.model import Role

from .conftest import accepted_conversation
from .harness import http, scrape
from .media_peers import MediaPeer, colour_close
from .test_metrics_and_openapi import samples, value

pytestmark = pytest.mark.integration

RED, BLUE = (0, 0, 255), (255, 0, 0)


async def negotiate(client, call_id: str, peer: MediaPeer) -> None:
    async with peer.negotiating:
        result = await client.ok("media.offer", call_id=call_id, sdp=await peer.offer())
        await peer.accept_answer(result["sdp"])


async def test_escalated_video_call_carries_media_both_ways(server, connect):
    use_host_addresses(["127.0.0.1"])  # the test's own peers, like the server, on loopback
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    started = await alice.ok("call.accept", call_id=call_id)
    assert started["join"]["media_available"] is True
    await shopper.expect("call.started")

    shopper_cam, staff_cam = MediaPeer("shopper", RED), MediaPeer("staff", BLUE)
    try:
        await negotiate(shopper, call_id, shopper_cam)
        await negotiate(alice, call_id, staff_cam)
        await staff_cam.wait_frames(15)
        await shopper_cam.wait_frames(15)
        assert colour_close(staff_cam.video_in()[0].mean_bgr(), RED)
        assert colour_close(shopper_cam.video_in()[0].mean_bgr(), BLUE)

        status, sessions = await http("GET", server.base_url + "/api/media-sessions",
                                      server.token(Role.OPERATOR, "ops"))
        assert status == 200
        [live] = sessions["media_sessions"]
        assert live["call_id"] == call_id and live["video_codec"] == "video/vp8"
        receiving = {p["participant_id"]: p["receiving"] for p in live["participants"]}
        assert {r["kind"] for r in receiving["staff:alice"]} == {"audio", "video"}
        assert all(r["packets"] > 0 for r in receiving["staff:alice"])
        assert {r["codec"] for r in receiving["staff:alice"]} == {"audio/opus", "video/vp8"}
        for _ in range(30):  # bitrates are measured once a second
            _, sessions = await http("GET", server.base_url + "/api/media-sessions",
                                     server.token(Role.OPERATOR, "ops"))
            staff_view = next(p for p in sessions["media_sessions"][0]["participants"]
                              if p["participant_id"] == "staff:alice")
            if all(r["bitrate_bps"] > 0 for r in staff_view["receiving"]):
                break
            await asyncio.sleep(0.2)
        assert all(r["bitrate_bps"] > 0 for r in staff_view["receiving"]), staff_view

        m = samples(await scrape(server))
        assert value(m, "shopcall_sfu_media_sessions") == 1
        assert value(m, "shopcall_sfu_participants") == 2
        during = value(m, "shopcall_sfu_forwarded_packets_total")
        assert during >= 30  # both sides decoded 15+ frames, each at least one packet
        assert value(m, "shopcall_sfu_keyframe_requests_sent_total") >= 2  # one per camera
        for _ in range(40):  # caps go to publishers once a second
            if value(m, "shopcall_sfu_rembs_sent_total") >= 1:
                break
            await asyncio.sleep(0.1)
            m = samples(await scrape(server))
        assert value(m, "shopcall_sfu_rembs_sent_total") >= 1

        await shopper.ok("call.end", call_id=call_id)
        await alice.expect("call.ended")
        for _ in range(50):
            _, sessions = await http("GET", server.base_url + "/api/media-sessions",
                                     server.token(Role.OPERATOR, "ops"))
            if not sessions["media_sessions"]:
                break
            await asyncio.sleep(0.1)
        assert sessions["media_sessions"] == []
        m = samples(await scrape(server))
        assert value(m, "shopcall_sfu_media_sessions") == 0
        assert value(m, "shopcall_sfu_forwarded_packets_total") >= during  # never goes down
    finally:
        await shopper_cam.close()
        await staff_cam.close()
