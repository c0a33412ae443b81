"""A colleague joins an ongoing call: the staff member invites someone of the same store, the
colleague joins through signalling, negotiates media like the others, and everyone decodes
everyone (the SFU renegotiates the streams in); the colleague leaves and the call goes on.
Real server, real WebSockets, real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mediaserver.aiortc_adapter import use_host_addresses
from signaling.model import Role

from .harness import ServerProcess, WsClient, http
from .media_peers import MediaPeer, colour_close
from .test_tryon_signalling import join, video_call

pytestmark = pytest.mark.integration

RED, BLUE, GREEN = (0, 0, 255), (255, 0, 0), (0, 200, 0)


async def _sees(peer: MediaPeer, colours: list[tuple[int, int, int]]) -> None:
    await peer.wait_frames(10, timeout=30, tracks=len(colours))
    seen = [r.mean_bgr() for r in peer.video_in() if r.frames >= 10]
    for colour in colours:
        assert any(colour_close(c, colour) for c in seen), (peer.name, seen)


async def test_colleague_invited_joins_sees_everyone_and_leaves(
        server_factory: Callable[..., ServerProcess],
        connect: Callable[..., Awaitable[WsClient]]) -> None:
    use_host_addresses(["127.0.0.1"])
    # Three parties' SDP outgrows the harness's 4 KiB frame limit: the production one.
    server = server_factory(max_message_bytes=65536)
    alice, shopper, call_id = await video_call(server, connect)
    dave = await connect(server, Role.STAFF, "dave")
    await dave.ok("presence.set", status="online")
    bob = await connect(server, Role.STAFF, "bob")  # connected, but away

    shopper_cam, alice_cam, dave_cam = (MediaPeer("shopper", RED), MediaPeer("alice", BLUE),
                                        MediaPeer("dave", GREEN))
    answering = [await join(shopper, call_id, shopper_cam), await join(alice, call_id, alice_cam)]
    try:
        await _sees(alice_cam, [RED])

        # Refusals, each with a clear code.
        await shopper.fail("call.invite", "forbidden", call_id=call_id, staff_id="dave")
        await alice.fail("call.invite", "not_found", call_id=call_id, staff_id="alice")
        await alice.fail("call.invite", "not_found", call_id=call_id, staff_id="nobody")
        reply = await alice.fail("call.invite", "forbidden", call_id=call_id, staff_id="carol")
        assert "another store" in reply["message"]
        reply = await alice.fail("call.invite", "invalid_state", call_id=call_id, staff_id="bob")
        assert "not online" in reply["message"]
        await dave.fail("call.invite", "not_found", call_id=call_id, staff_id="bob")
        await dave.fail("call.join", "not_found", call_id=call_id)  # not invited
        await bob.fail("call.join", "not_found", call_id=call_id)

        await alice.ok("call.invite", call_id=call_id, staff_id="dave")
        invited = await dave.expect("call.invited")
        assert invited["call"]["call_id"] == call_id and invited["from"]["id"] == "alice"
        assert invited["conversation"]["store"] == "lyon"
        joined = await dave.ok("call.join", call_id=call_id)
        assert joined["join"]["participant_id"] == "staff:dave"
        for party in (shopper, alice):
            notice = await party.expect("call.joined", call_id=call_id)
            assert notice["participant"] == "staff:dave" and notice["name"] == "Dave"
        answering.append(await join(dave, call_id, dave_cam))

        # Everyone decodes everyone else.
        await asyncio.gather(_sees(dave_cam, [RED, BLUE]), _sees(shopper_cam, [BLUE, GREEN]),
                             _sees(alice_cam, [RED, GREEN]))
        await dave.fail("call.invite", "forbidden", call_id=call_id, staff_id="bob")
        await alice.fail("call.leave", "invalid_state", call_id=call_id)

        # media.sources tells each client whose stream each m-section carries, with names:
        # the colour each one decodes on that mid is the named participant's camera.
        shopper_id = f"shopper:{shopper.welcome['subject']}"
        cameras = {shopper_id: RED, "staff:alice": BLUE, "staff:dave": GREEN}
        names = {shopper_id: None, "staff:alice": "Alice", "staff:dave": "Dave"}
        for client, peer, me in ((shopper, shopper_cam, shopper_id),
                                 (alice, alice_cam, "staff:alice"),
                                 (dave, dave_cam, "staff:dave")):
            told = [e for e in client.events if e.get("type") == "media.sources"]
            assert told, f"{me} was never told who is who"
            sources = told[-1]["sources"]
            video = {s["participant_id"]: s for s in sources if s["kind"] == "video"}
            assert set(video) == set(cameras) - {me}, (me, sources)
            for source_id, source in video.items():
                assert source["name"] == names[source_id]
                received = peer.video_by_mid(source["mid"])
                assert received is not None and colour_close(received.mean_bgr(),
                                                             cameras[source_id]), (me, source)
            assert {s["participant_id"] for s in sources if s["kind"] == "audio"} == \
                set(cameras) - {me}

        ops = server.token(Role.OPERATOR, "ops")
        _, sessions = await http("GET", server.base_url + "/api/media-sessions", ops)
        [live] = sessions["media_sessions"]
        assert {p["participant_id"] for p in live["participants"]} == {
            f"shopper:{shopper.welcome['subject']}", "staff:alice", "staff:dave"}, live

        # Dave leaves; the call goes on for the others.
        await dave.ok("call.leave", call_id=call_id)
        for party in (shopper, alice):
            notice = await party.expect("call.left", call_id=call_id)
            assert notice["participant"] == "staff:dave" and notice["name"] == "Dave"
        _, sessions = await http("GET", server.base_url + "/api/media-sessions", ops)
        [live] = sessions["media_sessions"]
        assert "staff:dave" not in {p["participant_id"] for p in live["participants"]}
        frames = alice_cam.video_in()[0].frames
        await alice_cam.wait_frames(frames + 10)
        await dave.fail("media.offer", "not_found", call_id=call_id, sdp="v=0\r\n")

        # Invited again, joined, and told when the call ends.
        await alice.ok("call.invite", call_id=call_id, staff_id="dave")
        await dave.expect("call.invited")
        await dave.ok("call.join", call_id=call_id)
        await alice.ok("call.end", call_id=call_id)
        assert (await dave.expect("call.ended", call_id=call_id))["reason"] == "hung_up"
        await dave.fail("call.leave", "not_found", call_id=call_id)

        _, record = await http("GET", f"{server.base_url}/api/conversations/"
                               f"{invited['conversation']['conversation_id']}", ops)
        kinds = [e["kind"] for e in record["events"]]
        assert kinds.count("call_joined") == 2 and kinds.count("call_left") == 1, kinds
    finally:
        for task in answering:
            task.cancel()
        for peer in (shopper_cam, alice_cam, dave_cam):
            await peer.close()
