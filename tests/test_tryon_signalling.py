"""Virtual try-on through the running server: `tryon.set` over the WebSocket, the staff's
`tryon.state`, what the staff peer decodes, and the garment catalogue over HTTP."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mediaserver.aiortc_adapter import use_host_addresses
from signaling.model import Role

from .conftest import accepted_conversation, new_shopper
from .harness import ServerProcess, WsClient, http
from .media_peers import MediaPeer, PhotoCamera, astronaut_image
from .test_tryon_media import changed, until

pytestmark = pytest.mark.integration


@pytest.fixture
def tryon_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose stores offer try-on, with a garments folder of its own."""
    server = ServerProcess(tmp_path)
    with server.config.open("a") as config:
        config.write(f'\n[tryon]\nenabled = true\ngarments_dir = "{tmp_path / "garments"}"\n')
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def video_call(server: ServerProcess, connect: Any) -> tuple[WsClient, WsClient, str]:
    staff, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await staff.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")
    return staff, shopper, call_id


async def join(client: WsClient, call_id: str, peer: MediaPeer) -> asyncio.Task[None]:
    """Negotiate, then keep answering the server's offers (the shopper's mirror slot)."""
    async with peer.negotiating:
        result = await client.ok("media.offer", call_id=call_id, sdp=await peer.offer())
        await peer.accept_answer(result["sdp"])

    async def answer() -> None:
        while True:
            event = await client.expect("media.offer", timeout=3600)
            async with peer.negotiating:
                sdp = await peer.answer_offer(event["sdp"])
                await client.ok("media.answer", call_id=call_id, sdp=sdp)
    return asyncio.ensure_future(answer())


async def test_shopper_turns_tryon_on_and_staff_sees_it(tryon_server: ServerProcess,
                                                        connect: Any) -> None:
    use_host_addresses(["127.0.0.1"])
    staff, shopper, call_id = await video_call(tryon_server, connect)
    photo = astronaut_image()
    shopper_cam, staff_cam = MediaPeer("shopper", camera=PhotoCamera(photo)), \
        MediaPeer("staff", (255, 0, 0))
    answering = [await join(shopper, call_id, shopper_cam),
                 await join(staff, call_id, staff_cam)]
    try:
        await staff_cam.wait_frames(15)
        view = staff_cam.video_in()[0]
        assert changed(view.last.to_ndarray(format="bgr24"), photo).mean() < 0.01
        ops = tryon_server.token(Role.OPERATOR, "ops")
        _, sessions = await http("GET", tryon_server.base_url + "/api/media-sessions", ops)
        assert sessions["media_sessions"][0]["tryon"] == [], "off: nothing is decoded"

        # Only the shopper decides what is drawn on them; bad requests change nothing.
        reply = await staff.fail("tryon.set", "forbidden", call_id=call_id, enabled=True,
                                 garment_id="sample-tshirt")
        assert "tryon.set" in reply["message"]
        reply = await shopper.fail("tryon.set", "unknown_garment", call_id=call_id,
                                   enabled=True, garment_id="sample-tshirtt")
        assert "sample-tshirt" in reply["message"]  # the message lists what exists
        await shopper.fail("tryon.set", "invalid_message", call_id=call_id, enabled=True)
        await shopper.fail("tryon.set", "not_found", call_id="call_nope", enabled=False)

        result = await shopper.ok("tryon.set", call_id=call_id, enabled=True,
                                  garment_id="sample-tshirt")
        assert result["enabled"] is True and result["garment"]["sku"]
        notice = await staff.expect("tryon.state", call_id=call_id)
        assert notice["enabled"] is True and notice["garment"]["id"] == "sample-tshirt"
        assert notice["participant_id"].startswith("shopper:")
        await until(lambda: changed(view.last.to_ndarray(format="bgr24"),
                                    photo).mean() > 0.05, "the garment on the staff's view")

        _, sessions = await http("GET", tryon_server.base_url + "/api/media-sessions", ops)
        [stream] = sessions["media_sessions"][0]["tryon"]
        assert stream["garment_id"] == "sample-tshirt" and stream["frames_out"] > 0

        await shopper.ok("tryon.set", call_id=call_id, enabled=False)
        notice = await staff.expect("tryon.state", call_id=call_id)
        assert notice["enabled"] is False and notice["garment"] is None
        await until(lambda: changed(view.last.to_ndarray(format="bgr24"),
                                    photo).mean() < 0.01, "the plain camera again")

        # Reports count this conversation as a video conversation with try-on.
        await shopper.ok("call.end", call_id=call_id)
        for channel, expected in (("video_tryon", 1), ("video", 0)):
            status, kpis = await http(
                "GET", f"{tryon_server.base_url}/api/reports/kpis?channel={channel}", ops)
            assert status == 200, kpis
            assert kpis["figures"]["conversations"]["value"] == expected, (channel, kpis)
    finally:
        for task in answering:
            task.cancel()
        for peer in (shopper_cam, staff_cam):
            await peer.close()


async def test_tryon_refused_where_it_is_not_offered(server_factory: Any,
                                                     connect: Any) -> None:
    for backend, reason in (("sfu", "not enabled on this server"),
                            ("none", "no media server|has none configured")):
        server = server_factory(media_backend=backend)
        _, shopper, call_id = await video_call(server, connect)
        reply = await shopper.fail("tryon.set", "tryon_unavailable", call_id=call_id,
                                   enabled=True, garment_id="sample-tshirt")
        assert any(part in reply["message"] for part in reason.split("|")), reply


def png(image: np.ndarray, ext: str = ".png") -> str:
    return base64.b64encode(cv2.imencode(ext, image)[1].tobytes()).decode()


def garment_body(garment_id: str, image_b64: str, **anchors: Any) -> dict[str, Any]:
    return {"id": garment_id, "name": "Red tee", "sku": "RT-1", "category": "top",
            "anchors": {"neck": [50, 10], "shoulder_width": 80, **anchors},
            "image_base64": image_b64}


async def test_garment_catalogue_over_http(tryon_server: ServerProcess,
                                           tmp_path: Path) -> None:
    base, ops = tryon_server.base_url, tryon_server.token(Role.OPERATOR, "ops")
    shopper = tryon_server.token(Role.SHOPPER, "shp_picker")
    status, body = await http("GET", base + "/api/garments", shopper)
    assert status == 200 and body["enabled"] is True
    samples = {g["id"]: g for g in body["garments"]}
    assert {"sample-tshirt", "sample-blazer"} <= set(samples)
    thumb = samples["sample-tshirt"]["thumbnail"]
    assert thumb.startswith("data:image/png;base64,")
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(thumb.split(",", 1)[1]), np.uint8),
                           cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape[2] == 4 and max(decoded.shape[:2]) <= 96

    tee = np.zeros((120, 100, 4), np.uint8)
    tee[10:, 10:90] = (40, 40, 220, 255)
    status, body = await http("POST", base + "/api/garments", ops,
                              garment_body("red-tee", png(tee)))
    assert status == 200 and body["garment"]["id"] == "red-tee", body
    folder = tmp_path / "garments"
    assert (folder / "red-tee.png").is_file() and (folder / "red-tee.json").is_file()
    tryon_server.stop()  # uploads outlive the process: they are files in the folder
    tryon_server.start()
    base = tryon_server.base_url
    _, listed = await http("GET", base + "/api/garments", shopper)
    assert "red-tee" in {g["id"] for g in listed["garments"]}

    # Bad files are refused with the reason, and nothing is stored.
    opaque = np.full((120, 100, 3), 200, np.uint8)
    for body_, status_, code, words in (
            (garment_body("bad-jpeg", png(opaque, ".jpg")), 400, "invalid_garment",
             "not a PNG"),
            (garment_body("no-alpha", png(opaque)), 400, "invalid_garment", "alpha"),
            (garment_body("bad-b64", "@@not base64@@"), 400, "invalid_garment", "base64"),
            (garment_body("out-of-image", png(tee), neck=[500, 10]), 400, "invalid_garment",
             "outside"),
            (garment_body("red-tee", png(tee)), 409, "invalid_state", "exists"),
            ({"id": "x"}, 400, "invalid_message", "name")):
        status, body = await http("POST", base + "/api/garments", ops, body_)
        assert status == status_ and body["error"]["code"] == code, body
        assert words in body["error"]["message"], body
    assert sorted(p.name for p in folder.iterdir()) == ["red-tee.json", "red-tee.png"]
    status, body = await http("POST", base + "/api/garments", shopper,
                              garment_body("sneaky", png(tee)))
    assert status == 403

    # Real product shots are far bigger than the 64 KiB other API bodies may be.
    noisy = np.random.default_rng(3).integers(0, 256, (500, 500, 4), np.uint8)
    noisy[:, :, 3] = 255
    big = garment_body("big-tee", png(noisy), neck=[250, 20], shoulder_width=400)
    assert len(big["image_base64"]) > 500_000
    status, body = await http("POST", base + "/api/garments", ops, big)
    assert status == 200, body
    status, _ = await http("DELETE", base + "/api/garments/big-tee", ops)
    assert status == 200

    status, _ = await http("DELETE", base + "/api/garments/red-tee", ops)
    assert status == 200 and not any(folder.iterdir())
    status, body = await http("DELETE", base + "/api/garments/red-tee", ops)
    assert status == 404 and body["error"]["code"] == "unknown_garment"


async def test_tryon_state_survives_a_reload_through_the_join(tryon_server: ServerProcess,
                                                               connect: Any) -> None:
    """A reload mid-call must not show "Off" while the garment is still drawn: the join that
    conversation.resume hands the reloaded page carries the try-on state."""
    use_host_addresses(["127.0.0.1"])
    staff = await connect(tryon_server, Role.STAFF, "alice")
    await staff.ok("presence.set", status="online")
    token = await new_shopper(tryon_server)
    shopper = await connect(tryon_server, token=token)
    cid = (await shopper.ok("conversation.open", store="lyon", skill="guitars",
                            language="en"))["conversation"]["conversation_id"]
    await staff.expect("conversation.offered")
    await staff.ok("conversation.accept", conversation_id=cid)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await staff.ok("call.accept", call_id=call_id)
    started = await shopper.expect("call.started")
    assert started["join"]["tryon"] == {"enabled": False, "garment": None}
    shopper_cam = MediaPeer("shopper", camera=PhotoCamera(astronaut_image()))
    answering = [await join(shopper, call_id, shopper_cam)]
    try:
        await shopper.ok("tryon.set", call_id=call_id, enabled=True, garment_id="sample-scarf")
        reloaded = await connect(tryon_server, token=token)
        resumed = await reloaded.ok("conversation.resume", conversation_id=cid)
        assert resumed["join"]["tryon"] == {
            "enabled": True, "garment": resumed["join"]["tryon"]["garment"]}
        assert resumed["join"]["tryon"]["garment"]["id"] == "sample-scarf"
        await reloaded.ok("tryon.set", call_id=call_id, enabled=False)
        resumed = await reloaded.ok("conversation.resume", conversation_id=cid)
        assert resumed["join"]["tryon"] == {"enabled": False, "garment": None}
    finally:
        for task in answering:
            task.cancel()
        await shopper_cam.close()
