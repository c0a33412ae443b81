"""Queueing, missed conversations with the asynchronous fallback, presence and dead devices."""

from __future__ import annotations

import asyncio

import pytest

from signaling.model import Role

from .conftest import accepted_conversation, new_shopper
from .harness import http, scrape

pytestmark = pytest.mark.integration


async def availability(server, **query: str) -> dict:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = await http("GET", f"{server.base_url}/api/availability?{qs}")
    assert status == 200, body
    return body


async def test_queue_positions_and_wait_estimates(server, connect):
    first = await connect(server, token=await new_shopper(server))
    second = await connect(server, token=await new_shopper(server))
    a = (await first.ok("conversation.open", store="lyon", skill="guitars", language="en"))
    b = (await second.ok("conversation.open", store="lyon", skill="guitars", language="en"))
    assert a["conversation"]["state"] == "queued" and a["conversation"]["position"] == 1
    assert b["conversation"]["position"] == 2
    assert b["conversation"]["estimated_wait_s"] is None  # nobody with the skill is online

    dave = await connect(server, Role.STAFF, "dave")  # guitars, one conversation at a time
    await dave.ok("presence.set", status="online")
    offered = await dave.expect("conversation.offered")
    assert offered["conversation"]["conversation_id"] == a["conversation"]["conversation_id"]
    update = await second.expect("queue.position",
                                 conversation_id=b["conversation"]["conversation_id"])
    # Now first in line, with one slot serving the pool and 120 s of expected handling time.
    assert update["position"] == 1
    assert update["estimated_wait_s"] == 120.0
    snapshot = await dave.ok("queue.list")
    assert [c["conversation_id"] for c in snapshot["queue"]] == [
        b["conversation"]["conversation_id"]]
    # Dave is full: chat may still queue, but a call is not offered right now.
    now = await availability(server, store="lyon", skill="guitars", language="en")
    assert now["chat"] is True and now["video"] is False and now["audio"] is False
    assert now["staff_online"] == 1 and now["free_slots"] == 0

    # Closing the first conversation frees Dave, who gets the second.
    await dave.ok("conversation.accept", conversation_id=a["conversation"]["conversation_id"])
    await first.ok("conversation.close", conversation_id=a["conversation"]["conversation_id"])
    await dave.expect("conversation.offered",
                      conversation__conversation_id=b["conversation"]["conversation_id"])


async def test_availability_follows_presence_and_skills(server, connect):
    assert (await availability(server, store="lyon", skill="guitars")) == {
        "chat": False, "audio": False, "video": False, "message": True,
        "staff_online": 0, "free_slots": 0}
    bob = await connect(server, Role.STAFF, "bob")  # pianos, chat and audio only
    await bob.ok("presence.set", status="online")
    pianos = await availability(server, store="lyon", skill="pianos")
    assert (pianos["chat"], pianos["audio"], pianos["video"]) == (True, True, False)
    await bob.ok("presence.set", status="busy_in_store")
    busy = await availability(server, store="lyon", skill="pianos")
    assert (busy["chat"], busy["audio"]) == (False, False)
    await bob.ok("presence.set", status="away")
    assert (await availability(server, store="lyon", skill="pianos"))["chat"] is False
    status, body = await http("GET", f"{server.base_url}/api/availability?store=nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_away_staff_get_no_offers_and_pending_offers_move(server, connect):
    alice = await connect(server, Role.STAFF, "alice")
    dave = await connect(server, Role.STAFF, "dave")
    await alice.ok("presence.set", status="online")
    shopper = await connect(server, token=await new_shopper(server))
    opened = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en")
    cid = opened["conversation"]["conversation_id"]
    await alice.expect("conversation.offered")
    await alice.ok("presence.set", status="busy_in_store")
    withdrawn = await alice.expect("conversation.offer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "staff_busy_in_store"
    await dave.ok("presence.set", status="online")
    await dave.expect("conversation.offered", conversation__conversation_id=cid)


async def test_missed_conversation_async_message_and_answer(server_factory, connect):
    server = server_factory(missed_after_s=0.8)
    token = await new_shopper(server)
    shopper = await connect(server, token=token)
    opened = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en",
                              sku="GTR-AC-114")
    cid = opened["conversation"]["conversation_id"]
    missed = await shopper.expect("conversation.missed", conversation_id=cid, timeout=5)
    assert missed["async_available"] is True
    await shopper.fail("chat.send", "not_found", conversation_id=cid, text="hello?")
    left = await shopper.ok("async.leave", conversation_id=cid,
                            text="Does the 114 come with a case?", contact="lea@example.org")
    message_id = left["async_message"]["id"]

    # Alice (Lyon, guitars) sees it in her console; Bob (pianos) does not; Carol (Paris) not.
    alice_token = server.token(Role.STAFF, "alice")
    status, inbox = await http("GET", f"{server.base_url}/api/async-messages?answered=false",
                               alice_token)
    assert status == 200
    assert [m["id"] for m in inbox["async_messages"]] == [message_id]
    assert inbox["async_messages"][0]["contact"] == "lea@example.org"
    for other in ("bob", "carol"):
        _, theirs = await http("GET", f"{server.base_url}/api/async-messages",
                               server.token(Role.STAFF, other))
        assert theirs["async_messages"] == []
    status, body = await http("POST",
                              f"{server.base_url}/api/async-messages/{message_id}/answer",
                              server.token(Role.STAFF, "bob"), {"answer": "Not mine"})
    assert status == 404, body

    status, answered = await http(
        "POST", f"{server.base_url}/api/async-messages/{message_id}/answer", alice_token,
        {"answer": "Yes, a hard case is included."})
    assert status == 200 and answered["async_message"]["answered_by"] == "alice"
    pushed = await shopper.expect("async.answered")
    assert pushed["async_message"]["answer"] == "Yes, a hard case is included."

    # The shopper comes back later with the same session token and finds the answer.
    await shopper.close()
    back = await connect(server, token=token)
    listed = {c["conversation_id"]: c for c in back.welcome["conversations"]}
    assert listed[cid]["state"] == "missed"
    resumed = await back.ok("conversation.resume", conversation_id=cid)
    assert resumed["async_messages"][0]["answer"] == "Yes, a hard case is included."

    _, unanswered = await http("GET", f"{server.base_url}/api/async-messages?answered=false",
                               alice_token)
    assert unanswered["async_messages"] == []
    _, record = await http("GET", f"{server.base_url}/api/conversations/{cid}",
                           server.token(Role.OPERATOR, "ops"))
    kinds = [e["kind"] for e in record["events"]]
    assert kinds == ["opened", "queued", "missed", "async_left", "async_answered"]


async def test_dead_device_leaves_routing_within_seconds(server_factory, connect):
    """With heartbeat_timeout_s = 1 s, a silent staff device is taken out of routing."""
    server = server_factory(heartbeat_timeout_s=1.0)
    alice = await connect(server, Role.STAFF, "alice")
    dave = await connect(server, Role.STAFF, "dave")
    await alice.ok("presence.set", status="online")
    await dave.ok("presence.set", status="online")
    assert (await availability(server, store="lyon", skill="guitars"))["staff_online"] == 2

    dave.keep_alive()
    await asyncio.wait_for(alice.closed.wait(), 5)
    assert alice.close_code == 4000
    after = await availability(server, store="lyon", skill="guitars")
    assert after["staff_online"] == 1  # Dave kept pinging and stays
    shopper = await connect(server, token=await new_shopper(server))
    await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en")
    await dave.expect("conversation.offered")


async def test_lost_staff_conversation_is_requeued_after_grace(server, connect):
    alice, shopper, cid = await accepted_conversation(server, connect)
    dave = await connect(server, Role.STAFF, "dave")
    dave.keep_alive()
    await dave.ok("presence.set", status="online")
    await alice.close()  # the tablet drops off the network and does not come back
    requeued = await shopper.expect("conversation.requeued", conversation_id=cid, timeout=5)
    assert requeued["reason"] == "staff_lost"
    await dave.expect("conversation.offered", conversation__conversation_id=cid)


async def test_staff_reconnecting_within_grace_keeps_conversation(server_factory, connect):
    server = server_factory(grace_s=5.0)
    alice, shopper, cid = await accepted_conversation(server, connect)
    await alice.close()
    again = await connect(server, Role.STAFF, "alice")
    again.keep_alive()
    assert [c["conversation_id"] for c in again.welcome["conversations"]] == [cid]
    assert again.welcome["presence"] == "offline"  # out of routing until she says otherwise
    await again.ok("chat.send", conversation_id=cid, text="Sorry, my tablet restarted")
    assert (await shopper.expect("chat.message"))["message"]["from"] == "staff"
    await asyncio.sleep(5.5)
    assert not [e for e in shopper.events if e["type"] == "conversation.requeued"]


async def test_a_message_left_while_waiting_is_stored_at_once_and_counted_once(
        server_factory, connect):
    """No lost leads: nobody online, the shopper leaves a message and goes (the socket
    closes right after the ack). It is in the inbox at once, not when the conversation would
    have been missed, the conversation is missed exactly once, and a retry of the same
    message (a lost ack) does not file it twice. An online colleague who may answer it is
    told at once; one who may not is not."""
    from .test_metrics_and_openapi import samples, value

    server = server_factory(missed_after_s=2.0)
    bob = await connect(server, Role.STAFF, "bob")  # pianos: may not answer a guitar question
    shopper = await connect(server, token=await new_shopper(server))
    cid = (await shopper.ok("conversation.open", store="lyon", skill="guitars",
                            language="en"))["conversation"]["conversation_id"]
    alice = await connect(server, Role.STAFF, "alice")  # online later, but not available yet
    left = await shopper.ok("async.leave", conversation_id=cid, text="Is the D-14 in stock?",
                            contact="anna@example.org")
    again = await shopper.ok("async.leave", conversation_id=cid, text="Is the D-14 in stock?",
                             contact="anna@example.org")
    assert again["async_message"]["id"] == left["async_message"]["id"]
    missed = await shopper.expect("conversation.missed", conversation_id=cid)
    assert missed["async_available"] is False  # it was left already
    await shopper.close()  # the tab is closed

    status, inbox = await http("GET", f"{server.base_url}/api/async-messages",
                               server.token(Role.OPERATOR, "ops"))
    assert status == 200
    assert [(m["conversation_id"], m["contact"]) for m in inbox["async_messages"]] == [
        (cid, "anna@example.org")]
    pushed = await alice.expect("async.left", conversation_id=cid)
    assert pushed["async_message_id"] == left["async_message"]["id"] and "contact" not in pushed
    assert not [e for e in bob.events if e["type"] == "async.left"]
    await asyncio.sleep(2.5)  # past missed_after_s: no second "missed"
    metrics = samples(await scrape(server))
    assert value(metrics, "shopcall_conversations_missed_total", store="lyon",
                 channel="chat") == 1


async def test_a_message_left_while_offered_withdraws_the_offer(server_factory, connect):
    server = server_factory(offer_timeout_s=30.0)
    alice = await connect(server, Role.STAFF, "alice")
    await alice.ok("presence.set", status="online")
    shopper = await connect(server, token=await new_shopper(server))
    cid = (await shopper.ok("conversation.open", store="lyon", skill="guitars",
                            language="en"))["conversation"]["conversation_id"]
    await alice.expect("conversation.offered")
    await shopper.ok("async.leave", conversation_id=cid, text="I can't wait, call me?",
                     contact="+33 6 12 34 56 78")
    withdrawn = await alice.expect("conversation.offer_withdrawn", conversation_id=cid)
    assert withdrawn["reason"] == "closed_by_shopper"
    await alice.expect("async.left", conversation_id=cid)
    await alice.fail("conversation.accept", "not_found", conversation_id=cid)
    # Accepted conversations are live help: no message for later there.
    other = await connect(server, token=await new_shopper(server))
    cid2 = (await other.ok("conversation.open", store="lyon", skill="guitars",
                           language="en"))["conversation"]["conversation_id"]
    await alice.expect("conversation.offered", conversation__conversation_id=cid2)
    await alice.ok("conversation.accept", conversation_id=cid2)
    await other.fail("async.leave", "invalid_state", conversation_id=cid2, text="x",
                     contact="x@example.org")
