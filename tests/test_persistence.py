"""No acknowledged message or state change is lost when the server dies mid-conversation."""

from __future__ import annotations

import asyncio
import json

import pytest

from signaling.model import Role

from .conftest import accepted_conversation, new_shopper
from .harness import WsClient, http

pytestmark = pytest.mark.integration


async def test_sigkill_mid_conversation_loses_nothing_acknowledged(server, connect):
    alice = await connect(server, Role.STAFF, "alice")
    await alice.ok("presence.set", status="online")
    token = await new_shopper(server)
    shopper = await connect(server, token=token)
    opened = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en")
    cid = opened["conversation"]["conversation_id"]
    await alice.expect("conversation.offered")
    await alice.ok("conversation.accept", conversation_id=cid)
    queued_shopper = await connect(server, token=await new_shopper(server))
    waiting = await queued_shopper.ok("conversation.open", store="paris", skill="pianos",
                                      language="fr")
    waiting_id = waiting["conversation"]["conversation_id"]
    assert waiting["conversation"]["state"] == "queued"

    # Fire messages without waiting, kill the server while acks are still coming back.
    acked: dict[str, int] = {}
    total = 200
    for i in range(total):
        await shopper.ws.send_str(json.dumps({"type": "chat.send", "id": f"m{i}",
                                              "conversation_id": cid, "text": f"message {i}"}))

    # Acks for raw sends land in `events` (no reply future was registered for them).
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        for event in shopper.events:
            if event.get("type") == "ack" and event.get("id", "").startswith("m"):
                acked[event["id"]] = event["result"]["message"]["seq"]
        if len(acked) >= total // 4:
            break
        await asyncio.sleep(0.002)
    server.kill()
    await asyncio.sleep(0.2)
    for event in shopper.events:  # acks that arrived before the socket died
        if event.get("type") == "ack" and event.get("id", "").startswith("m"):
            acked[event["id"]] = event["result"]["message"]["seq"]
    assert total // 4 <= len(acked) < total, "the kill must land mid-stream"

    server.start()
    operator = server.token(Role.OPERATOR, "ops")
    status, record = await http("GET", f"{server.base_url}/api/conversations/{cid}", operator)
    assert status == 200
    stored = {m["client_id"]: m for m in record["messages"]}
    for request_id, seq in acked.items():
        assert request_id in stored, f"acknowledged {request_id} was lost"
        assert stored[request_id]["seq"] == seq
        assert stored[request_id]["text"] == f"message {request_id[1:]}"
    kinds = [e["kind"] for e in record["events"]]
    assert kinds[:3] == ["opened", "assigned", "accepted"]
    assert record["conversation"]["state"] == "accepted"

    # After the restart: the queued conversation still waits, the accepted one resumes.
    again = await WsClient.connect(server.ws_url, server.token(Role.STAFF, "alice"))
    try:
        assert [c["conversation_id"] for c in again.welcome["conversations"]] == [cid]
        back = await WsClient.connect(server.ws_url, token)
        try:
            resumed = await back.ok("conversation.resume", conversation_id=cid)
            assert len(resumed["messages"]) == len(stored)
            sent = await back.ok("chat.send", conversation_id=cid, text="still there?")
            assert sent["message"]["seq"] == max(m["seq"] for m in record["messages"]) + 1
            assert (await again.expect("chat.message"))["message"]["text"] == "still there?"
        finally:
            await back.close()
        _, waiting_record = await http(
            "GET", f"{server.base_url}/api/conversations/{waiting_id}", operator)
        assert waiting_record["conversation"]["state"] == "queued"
    finally:
        await again.close()


async def test_resent_message_is_stored_once(server, connect):
    alice, shopper, cid = await accepted_conversation(server, connect)
    frame = json.dumps({"type": "chat.send", "id": "same-id", "conversation_id": cid,
                        "text": "hello"})
    await shopper.raw(frame)
    await shopper.raw(frame)  # a client that did not see the ack sends again
    acks = [await shopper.expect("ack") for _ in range(2)]
    assert acks[0]["result"]["message"]["seq"] == acks[1]["result"]["message"]["seq"] == 1
    await alice.expect("chat.message")
    await asyncio.sleep(0.3)
    assert not [e for e in alice.events if e["type"] == "chat.message"]
    _, record = await http("GET", f"{server.base_url}/api/conversations/{cid}",
                           server.token(Role.OPERATOR, "ops"))
    assert [m["text"] for m in record["messages"]] == ["hello"]
