"""Camera off is said, not guessed: `media.state` reaches everyone in the call, and a device
that negotiates media later learns whose camera is off."""

from __future__ import annotations

import pytest

from mediaserver.aiortc_adapter import use_host_addresses

from .conftest import accepted_conversation
from .media_peers import MediaPeer
from .test_call_media_e2e import BLUE, negotiate

pytestmark = pytest.mark.integration


async def test_camera_off_is_relayed_and_caught_up_on_negotiation(server, connect):
    use_host_addresses(["127.0.0.1"])
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await alice.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")

    assert await shopper.ok("media.state", call_id=call_id, camera="off") == \
        {"call_id": call_id, "camera": "off"}
    told = await alice.expect("media.state", call_id=call_id)
    assert told["camera"] == "off" and told["participant_id"].startswith("shopper:")
    await shopper.fail("media.state", "invalid_message", call_id=call_id, camera="maybe")
    await alice.fail("media.state", "not_found", call_id="call_nope", camera="off")

    # Alice's console reloads and negotiates again: it is told the shopper's camera is off.
    alice.drop("media.state")
    staff_cam = MediaPeer("staff", BLUE)
    try:
        await negotiate(alice, call_id, staff_cam)
        caught_up = await alice.expect("media.state", call_id=call_id, timeout=5)
        assert caught_up["camera"] == "off"
        await shopper.ok("media.state", call_id=call_id, camera="on")
        assert (await alice.expect("media.state", call_id=call_id))["camera"] == "on"
    finally:
        await staff_cam.close()
