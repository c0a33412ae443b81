"""A whole consultation through a real server: open, route, chat, escalate, close, rate."""

from __future__ import annotations

import pytest

from signaling.model import Role

from .conftest import accepted_conversation, new_shopper
from .harness import http

pytestmark = pytest.mark.integration


async def online(connect, server, staff_id: str):
    client = await connect(server, Role.STAFF, staff_id)
    assert (await client.ok("presence.set", status="online"))["status"] == "online"
    return client


async def test_chat_to_video_consultation_end_to_end(server, connect):
    alice = await online(connect, server, "alice")
    shopper = await connect(server, token=await new_shopper(server))
    opened = await shopper.ok("conversation.open", store="lyon", skill="guitars",
                              language="en", sku="GTR-AC-114",
                              page_url="https://shop.example/gtr-ac-114")
    cid = opened["conversation"]["conversation_id"]
    assert opened["conversation"]["state"] == "assigned"

    offer = await alice.expect("conversation.offered")
    assert offer["conversation"]["conversation_id"] == cid
    assert offer["conversation"]["sku"] == "GTR-AC-114"
    accepted = await alice.ok("conversation.accept", conversation_id=cid)
    assert accepted["conversation"]["state"] == "accepted"
    hello = await shopper.expect("conversation.accepted", conversation_id=cid)
    assert hello["staff"] == {"id": "alice", "name": "Alice"}

    # Chat both ways; each side gets an ack with the stored message, the other an event.
    sent = await shopper.ok("chat.send", conversation_id=cid, text="Is it solid top?")
    assert sent["message"]["seq"] == 1
    got = await alice.expect("chat.message")
    assert got["message"]["text"] == "Is it solid top?" and got["message"]["from"] == "shopper"
    card = {"sku": "GTR-AC-114", "title": "Auditorium 114", "price": 899.0, "currency": "EUR",
            "image_url": "https://shop.example/i/114.jpg", "link": "https://shop.example/114"}
    await alice.ok("chat.send", conversation_id=cid, text="Yes, solid spruce.")
    await alice.ok("chat.send", conversation_id=cid, card=card)
    assert (await shopper.expect("chat.message"))["message"]["text"] == "Yes, solid spruce."
    card_msg = await shopper.expect("chat.message")
    assert card_msg["message"]["kind"] == "product_card" and card_msg["message"]["card"] == card
    await shopper.fail("chat.send", "forbidden", conversation_id=cid, card=card)
    await shopper.ok("chat.typing", conversation_id=cid, typing=True)
    typing = await alice.expect("chat.typing")
    assert typing["typing"] is True and typing["from"] == "shopper"

    # Escalation: the shopper asks for video, staff accept, both get what they need to join.
    proposed = await shopper.ok("call.propose", conversation_id=cid, kind="video")
    call_id = proposed["call"]["call_id"]
    assert (await alice.expect("call.proposed"))["call"]["kind"] == "video"
    await shopper.fail("call.accept", "invalid_state", call_id=call_id)  # not your own
    started = await alice.ok("call.accept", call_id=call_id)
    assert started["join"]["session_id"].startswith("ms_")
    assert started["join"]["participant_id"] == "staff:alice"
    shopper_join = await shopper.expect("call.started")
    assert shopper_join["join"]["session_id"] == started["join"]["session_id"]
    assert shopper_join["join"]["participant_id"].startswith("shopper:")
    # Broken SDP is refused with a clear code and the call stays up.
    await shopper.fail("media.offer", "negotiation_failed", call_id=call_id, sdp="v=0\r\n")
    await shopper.ok("call.end", call_id=call_id)
    assert (await alice.expect("call.ended"))["call_id"] == call_id

    await alice.ok("conversation.close", conversation_id=cid)
    await shopper.expect("conversation.closed", conversation_id=cid)
    await shopper.expect("feedback.requested", conversation_id=cid)
    await shopper.ok("feedback.submit", conversation_id=cid, satisfaction=5,
                     recommendation=9, comment="Great advice")
    await shopper.fail("feedback.submit", "invalid_state", conversation_id=cid,
                       satisfaction=1, recommendation=0)

    # The shop's back end reports the order.
    operator = server.token(Role.OPERATOR, "backend")
    status, _ = await http("POST", f"{server.base_url}/api/conversations/{cid}/outcome",
                           operator, {"order_placed": True, "order_value": 899.0,
                                      "currency": "EUR"})
    assert status == 200

    status, record = await http("GET", f"{server.base_url}/api/conversations/{cid}", operator)
    assert status == 200
    kinds = [e["kind"] for e in record["events"]]
    for kind in ("opened", "assigned", "accepted", "escalated", "call_started", "call_ended",
                 "closed", "rated", "outcome"):
        assert kind in kinds, kinds
    assert kinds.index("opened") < kinds.index("accepted") < kinds.index("call_started") \
        < kinds.index("call_ended") < kinds.index("closed")
    assert [m["seq"] for m in record["messages"]] == [1, 2, 3]
    assert record["rating"]["satisfaction"] == 5 and record["rating"]["recommendation"] == 9
    assert record["outcome"] == {**record["outcome"], "order_placed": True, "order_value": 899.0}
    assert record["calls"][0]["started_at"] is not None
    assert record["calls"][0]["ended_at"] is not None


async def test_routing_prefers_requested_store_then_least_loaded(server, connect):
    carol = await online(connect, server, "carol")  # paris, guitars
    alice = await online(connect, server, "alice")  # lyon, guitars, max 2
    dave = await online(connect, server, "dave")  # lyon, guitars, max 1
    token = await new_shopper(server)
    shopper = await connect(server, token=token)

    first = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en")
    # Alice and Dave are both idle in Lyon; Dave came online last, so Alice idled longest.
    await alice.expect("conversation.offered",
                       conversation__conversation_id=first["conversation"]["conversation_id"])
    second = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en")
    # Alice now carries 1/2, Dave 0/1: Dave is least loaded.
    await dave.expect("conversation.offered",
                      conversation__conversation_id=second["conversation"]["conversation_id"])
    other = await connect(server, token=await new_shopper(server))
    third = await other.ok("conversation.open", store="lyon", skill="guitars", language="en")
    # Alice at 1/2 (50%) still beats overflowing to Paris.
    await alice.expect("conversation.offered",
                       conversation__conversation_id=third["conversation"]["conversation_id"])
    fourth = await other.ok("conversation.open", store="lyon", skill="guitars", language="en")
    # Lyon is full: overflow to Carol in Paris.
    await carol.expect("conversation.offered",
                       conversation__conversation_id=fourth["conversation"]["conversation_id"])


async def test_no_overflow_store_waits_for_its_own_staff(server_factory, connect):
    server = server_factory(paris_overflow="false")
    await online(connect, server, "alice")  # lyon has guitars, paris does not allow overflow
    shopper = await connect(server, token=await new_shopper(server))
    opened = await shopper.ok("conversation.open", store="paris", skill="guitars",
                              language="en")
    assert opened["conversation"]["state"] == "queued"
    assert opened["conversation"]["position"] == 1
    carol = await online(connect, server, "carol")
    await carol.expect("conversation.offered")


async def test_skill_language_and_channel_filters(server, connect):
    bob = await online(connect, server, "bob")  # pianos, fr only, no video
    shopper = await connect(server, token=await new_shopper(server))
    english = await shopper.ok("conversation.open", store="lyon", skill="pianos", language="en")
    assert english["conversation"]["state"] == "queued"
    video = await shopper.ok("conversation.open", store="lyon", skill="pianos", language="fr",
                             channel="video")
    assert video["conversation"]["state"] == "queued"
    french = await shopper.ok("conversation.open", store="lyon", skill="pianos", language="fr")
    assert french["conversation"]["state"] == "assigned"
    await bob.expect("conversation.offered",
                     conversation__conversation_id=french["conversation"]["conversation_id"])


async def test_qualification_answers_pick_the_skill(server, connect):
    status, body = await http("GET", server.base_url + "/api/qualification")
    assert status == 200 and body["questions"][0]["id"] == "what"
    bob = await online(connect, server, "bob")
    shopper = await connect(server, token=await new_shopper(server))
    opened = await shopper.ok("conversation.open", store="lyon", language="fr",
                              answers={"what": "pno"})
    assert opened["conversation"]["skill"] == "pianos"
    await bob.expect("conversation.offered")
    await shopper.fail("conversation.open", "invalid_message", answers={"what": "drums"})


async def test_decline_reroutes_and_offer_timeout_reroutes(server_factory, connect):
    server = server_factory(offer_timeout_s=0.8)
    alice = await online(connect, server, "alice")
    dave = await online(connect, server, "dave")
    shopper = await connect(server, token=await new_shopper(server))
    opened = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="en")
    cid = opened["conversation"]["conversation_id"]
    await alice.expect("conversation.offered", conversation__conversation_id=cid)
    await alice.ok("conversation.decline", conversation_id=cid, reason="on a call")
    await dave.expect("conversation.offered", conversation__conversation_id=cid)
    # Dave ignores it: the offer expires and, with both Lyon guitarists out, Carol is next.
    carol = await online(connect, server, "carol")
    withdrawn = await dave.expect("conversation.offer_withdrawn", timeout=5)
    assert withdrawn["reason"] == "expired"
    await carol.expect("conversation.offered", conversation__conversation_id=cid)
    await dave.fail("conversation.accept", "not_found", conversation_id=cid)


async def test_transfer_to_colleague_and_to_skill(server, connect):
    alice = await online(connect, server, "alice")
    bob = await online(connect, server, "bob")
    dave = await online(connect, server, "dave")
    shopper = await connect(server, token=await new_shopper(server))
    opened = await shopper.ok("conversation.open", store="lyon", skill="guitars", language="fr")
    cid = opened["conversation"]["conversation_id"]
    await alice.expect("conversation.offered")
    await alice.ok("conversation.accept", conversation_id=cid)
    await shopper.ok("chat.send", conversation_id=cid, text="Actually, about pianos")

    await alice.ok("conversation.transfer", conversation_id=cid, to_skill="pianos")
    offered = await bob.expect("conversation.offered", conversation__conversation_id=cid)
    assert offered["conversation"]["skill"] == "pianos"
    moved = await shopper.expect("conversation.transferred", conversation_id=cid)
    assert moved["to_skill"] == "pianos"
    await alice.fail("chat.send", "not_found", conversation_id=cid, text="still here?")
    accepted = await bob.ok("conversation.accept", conversation_id=cid)
    assert [m["text"] for m in accepted["messages"]] == ["Actually, about pianos"]

    await bob.ok("conversation.transfer", conversation_id=cid, to_staff="dave")
    await dave.expect("conversation.offered", conversation__conversation_id=cid)
    await dave.ok("conversation.accept", conversation_id=cid)
    assert (await shopper.expect("conversation.accepted", staff__id="dave"))
    await bob.fail("conversation.transfer", "not_found", conversation_id=cid, to_staff="alice")

    operator = server.token(Role.OPERATOR, "ops")
    _, record = await http("GET", f"{server.base_url}/api/conversations/{cid}", operator)
    transfers = [e["data"] for e in record["events"] if e["kind"] == "transferred"]
    assert transfers == [{"to_skill": "pianos"}, {"to_staff": "dave"}]
    assert record["conversation"]["skill"] == "pianos"


async def test_chat_only_deployment_refuses_media_clearly(server_factory, connect):
    server = server_factory(media_backend="none")
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await alice.ok("call.propose", conversation_id=cid,
                              kind="audio"))["call"]["call_id"]
    started = await shopper.ok("call.accept", call_id=call_id)
    assert started["join"]["media_available"] is False
    await shopper.fail("media.offer", "media_unavailable", call_id=call_id,
                       sdp="v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
