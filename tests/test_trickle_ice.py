"""Trickle ICE and visible connection failures, through the running server with aiortc peers.

Offers arrive without candidates (as browsers send them now); candidates follow as
`media.candidate` messages. What must hold: trickled candidates are applied (the connection
comes up and the operator listing says over which candidate types), a candidate of an earlier
ICE generation is ignored, garbage is refused with a clear error and breaks nothing, and a
connection that cannot come up fails visibly: a reason in `/api/media-sessions`, a log line,
`shopcall_media_connections_total{outcome="failed"}`, and a notice to the others in the call.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from mediaserver.aiortc_adapter import use_host_addresses
from signaling.model import Role

from .conftest import accepted_conversation
from .harness import http, scrape
from .media_peers import MediaPeer
from .test_metrics_and_openapi import samples, value

pytestmark = pytest.mark.integration

_CANDIDATE = re.compile(r"^a=(candidate:.*)$", re.MULTILINE)


def without_candidates(sdp: str) -> tuple[str, list[str]]:
    """The SDP a trickling browser sends (no candidates, no end-of-candidates), and the
    candidates it then sends one by one."""
    candidates = [c.strip() for c in _CANDIDATE.findall(sdp)]
    lines = [line for line in sdp.split("\r\n")
             if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(lines), candidates


def ufrag(sdp: str) -> str:
    return re.search(r"^a=ice-ufrag:(\S+)", sdp, re.MULTILINE).group(1)


def shopper_of(client) -> str:
    return "shopper:" + client.welcome["subject"]


async def participant(server, who: str) -> dict:
    _, body = await http("GET", server.base_url + "/api/media-sessions",
                         server.token(Role.OPERATOR, "ops"))
    [session] = body["media_sessions"]
    return next(p for p in session["participants"] if p["participant_id"] == who)


async def eventually(probe, condition, what: str, timeout_s: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await probe()
        if condition(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {result}")
        await asyncio.sleep(0.2)


async def started_call(server, connect):
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await alice.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")
    return alice, shopper, call_id


async def trickle_offer(client, call_id: str, peer: MediaPeer) -> list[str]:
    """Offer without candidates, then each candidate, then end-of-candidates."""
    sdp, candidates = without_candidates(await peer.offer())
    async with peer.negotiating:
        result = await client.ok("media.offer", call_id=call_id, sdp=sdp)
        await peer.accept_answer(result["sdp"])
    for candidate in candidates:
        await client.ok("media.candidate", call_id=call_id, candidate=candidate,
                        sdp_mid="0", ufrag=ufrag(sdp))
    await client.ok("media.candidate", call_id=call_id, candidate="", ufrag=ufrag(sdp))
    return candidates


async def test_trickled_candidates_connect_and_the_listing_says_how(server, connect):
    use_host_addresses(["127.0.0.1"])
    alice, shopper, call_id = await started_call(server, connect)
    shopper_cam, staff_cam = MediaPeer("shopper", (0, 0, 255)), MediaPeer("staff")
    try:
        # Before any offer there is no connection to add a candidate to.
        error = await shopper.fail("media.candidate", "negotiation_failed", call_id=call_id,
                                   candidate="candidate:1 1 UDP 2130706431 127.0.0.1 9 typ "
                                             "host", sdp_mid="0")
        assert "send an offer first" in error["message"]
        candidates = await trickle_offer(shopper, call_id, shopper_cam)
        assert candidates, "aiortc gathered no candidate to trickle"
        await trickle_offer(alice, call_id, staff_cam)
        await staff_cam.wait_frames(10)
        await shopper_cam.wait_frames(10)

        view = await eventually(lambda: participant(server, shopper_of(shopper)),
                                lambda p: p["connection"]["outcome"] == "connected",
                                "the shopper's connection listed as connected")
        connection = view["connection"]
        assert connection["ice_state"] == "completed", connection
        assert connection["candidate_type"] == "host", connection
        assert connection["pair"] == {"local": "host", "remote": "host", "protocol": "udp"}
        assert connection["failure"] is None and connection["connected_after_s"] >= 0

        # Garbage and out-of-date candidates: a clear error or nothing, never a broken call.
        await shopper.fail("media.candidate", "negotiation_failed", call_id=call_id,
                           candidate="candidate:garbage", sdp_mid="0")
        await shopper.fail("media.candidate", "invalid_message", call_id=call_id,
                           candidate=candidates[0])  # neither sdp_mid nor sdp_mline_index
        await shopper.ok("media.candidate", call_id=call_id, candidate=candidates[0],
                         sdp_mid="0", ufrag="an-earlier-generation")
        await shopper.ok("media.candidate", call_id=call_id, candidate=candidates[0],
                         sdp_mid="0", ufrag=None)  # after end-of-candidates: ignored
        # A browser's TCP candidate cannot pair with a UDP-only server: accepted, ignored.
        await shopper.ok("media.candidate", call_id=call_id, sdp_mid="0",
                         candidate="candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host "
                                   "tcptype active")
        frames = staff_cam.video_in()[0].frames
        await staff_cam.wait_frames(frames + 5)  # still flowing

        # The client's own report joins the listing and settles the count at once.
        await shopper.ok("media.connection", call_id=call_id, state="connected",
                         candidate_type="srflx", protocol="udp")
        view = await participant(server, "shopper:" + shopper.welcome["subject"])
        assert view["connection"]["client"]["candidate_type"] == "srflx"
        assert view["connection"]["candidate_type"] == "srflx"
        metrics = samples(await scrape(server))
        total = "shopcall_media_connections_total"
        connected = await eventually(
            lambda: scrape(server),
            lambda text: value(samples(text), total, outcome="connected",
                               candidate_type="srflx") == 1
            and value(samples(text), total, outcome="connected", candidate_type="host") == 1,
            "both connections counted (the staff one once its 5 s without a report passed)")
        metrics = samples(connected)
        assert value(metrics, total, outcome="failed", candidate_type="none") == 0
    finally:
        await shopper_cam.pc.close()
        await staff_cam.pc.close()


async def test_a_connection_that_cannot_come_up_fails_visibly(server, connect):
    use_host_addresses(["127.0.0.1"])
    alice, shopper, call_id = await started_call(server, connect)
    staff_cam = MediaPeer("staff")
    ghost = MediaPeer("shopper")  # makes an offer, then its network "blocks everything"
    try:
        await trickle_offer(alice, call_id, staff_cam)
        sdp, _ = without_candidates(await ghost.offer())
        await ghost.pc.close()  # nobody will answer the server's checks
        await shopper.ok("media.offer", call_id=call_id, sdp=sdp)
        # The browser saw its TURN server refuse it, and says so as it gives up.
        await shopper.ok("media.candidate", call_id=call_id, candidate="", ufrag=ufrag(sdp))
        await shopper.ok("media.connection", call_id=call_id, state="failed", errors=[
            {"url": "turns:turn.shop.example:443?transport=tcp", "code": 401,
             "text": "Unauthorized"}])
        view = await eventually(lambda: participant(server, shopper_of(shopper)),
                                lambda p: p["connection"]["outcome"] == "failed",
                                "the shopper's connection listed as failed")
        assert "refused the credentials (401)" in view["connection"]["failure"], view
        assert view["connection"]["client"]["errors"][0]["code"] == 401
        # The store's side is told, instead of waiting for a picture that is not coming.
        notice = await alice.expect("media.notice", code="peer_connection_failed")
        assert notice["from"] == "shopper:" + shopper.welcome["subject"]
        text = await scrape(server)
        assert value(samples(text), "shopcall_media_connections_total", outcome="failed",
                     candidate_type="none") == 1
        log = server.log.read_text()
        assert "a shopper's media connection failed: the TURN server refused" in log
        assert shopper.welcome["subject"] not in log.split("media connection failed")[-1][:300]

        # The shopper tries again (a new connection, which works): the others hear so.
        retry = MediaPeer("shopper", (0, 255, 0))
        try:
            await trickle_offer(shopper, call_id, retry)
            await alice.expect("media.notice", code="peer_connected", timeout=15)
            await retry.wait_frames(5)
        finally:
            await retry.pc.close()
    finally:
        await staff_cam.pc.close()
        await ghost.pc.close()
