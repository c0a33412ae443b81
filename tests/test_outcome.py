"""Recording a conversation's outcome (order, value): the shop's back end with an operator
token, or, where the shop has no such feed, the staff member who handled it (the staff
console's outcome form). Reports count what was recorded either way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from signaling.model import Role

from .conftest import accepted_conversation
from .harness import ServerProcess, WsClient, http

pytestmark = pytest.mark.integration


async def _outcome(server: ServerProcess, cid: str, token: str, body: dict[str, Any]
                   ) -> tuple[int, Any]:
    return await http("POST", f"{server.base_url}/api/conversations/{cid}/outcome", token,
                      body)


async def test_staff_who_handled_it_records_the_outcome(
        server: ServerProcess, connect: Callable[..., Awaitable[WsClient]]) -> None:
    alice, _shopper, cid = await accepted_conversation(server, connect)
    await alice.ok("conversation.close", conversation_id=cid)
    order = {"order_placed": True, "order_value": 249.0, "currency": "EUR"}

    # Only who handled it: not a colleague who never touched it, not the shopper.
    # A colleague gets exactly what a conversation that does not exist gets: ids of other
    # people's conversations cannot be probed.
    status, body = await _outcome(server, cid, server.token(Role.STAFF, "dave"), order)
    assert status == 404 and body["error"]["code"] == "not_found", body
    missing = await _outcome(server, "cnv_doesnotexist", server.token(Role.STAFF, "dave"), order)
    assert (status, body["error"]["message"].replace(cid, "ID")) == (
        missing[0], missing[1]["error"]["message"].replace("cnv_doesnotexist", "ID"))
    status, body = await _outcome(server, cid, server.token(Role.SHOPPER, "someone"), order)
    assert status == 403, body

    # Bad bodies get clear errors.
    alice_token = server.token(Role.STAFF, "alice")
    for bad, field in (({"order_placed": True, "order_value": -5, "currency": "EUR"},
                        "order_value"),
                       ({"order_placed": True, "order_value": 20}, "currency"),
                       ({"order_placed": True, "order_value": 20, "currency": "euro"},
                        "currency"),
                       ({"order_placed": False, "order_value": 20, "currency": "EUR"},
                        "order_value"),
                       ({"order_value": 20, "currency": "EUR"}, "order_placed")):
        status, body = await _outcome(server, cid, alice_token, bad)
        assert status == 400 and body["error"]["code"] == "invalid_message", (bad, body)
        assert field in body["error"]["message"] + str(body["error"].get("details", "")), body

    status, body = await _outcome(server, cid, alice_token, order)
    assert status == 200 and body["order_value"] == 249.0, body
    # A correction replaces it.
    status, body = await _outcome(server, cid, alice_token, {**order, "order_value": 299.0})
    assert status == 200, body

    ops = server.token(Role.OPERATOR, "ops")
    status, record = await http("GET", f"{server.base_url}/api/conversations/{cid}", ops)
    assert record["outcome"]["order_value"] == 299.0, record["outcome"]
    actors = [e["actor"] for e in record["events"] if e["kind"] == "outcome"]
    assert actors == ["staff:alice", "staff:alice"], record["events"]
    # Reports count the staff-recorded order.
    status, kpis = await http("GET", f"{server.base_url}/api/reports/kpis", ops)
    assert status == 200, kpis
    assert kpis["figures"]["orders"]["value"] == 1, kpis["figures"]["orders"]
    assert kpis["figures"]["revenue_EUR"]["value"] == 299.0, kpis["figures"]
    assert cid in kpis["figures"]["orders"]["conversation_ids"]


async def test_former_and_current_assignee_may_record_it_others_not(
        server: ServerProcess, connect: Callable[..., Awaitable[WsClient]]) -> None:
    """A conversation handed over keeps both staff members able to record its outcome: the
    one who sold may be the one who handed it on (the "accepted" event proves it), and the
    current assignee is the conversation's staff. Being merely offered it is not enough."""
    alice, _shopper, cid = await accepted_conversation(server, connect)
    carol = await connect(server, Role.STAFF, "carol")
    await carol.ok("presence.set", status="online")
    await alice.ok("conversation.transfer", conversation_id=cid, to_staff="carol")
    await carol.expect("conversation.offered", conversation__conversation_id=cid)
    await carol.ok("conversation.accept", conversation_id=cid)

    no_order = {"order_placed": False}
    status, body = await _outcome(server, cid, server.token(Role.STAFF, "alice"), no_order)
    assert status == 200 and body["order_placed"] is False, body  # former assignee
    order = {"order_placed": True, "order_value": 80.5, "currency": "EUR"}
    status, body = await _outcome(server, cid, server.token(Role.STAFF, "carol"), order)
    assert status == 200, body  # current assignee corrects it
    status, body = await _outcome(server, cid, server.token(Role.STAFF, "dave"), order)
    assert status == 404 and body["error"]["code"] == "not_found", body
    status, body = await _outcome(server, "cnv_nope", server.token(Role.STAFF, "carol"), order)
    assert status == 404, body

    ops = server.token(Role.OPERATOR, "ops")
    status, record = await http("GET", f"{server.base_url}/api/conversations/{cid}", ops)
    assert status == 200, record
    assert record["outcome"]["order_value"] == 80.5, record["outcome"]
    actors = [e["actor"] for e in record["events"] if e["kind"] == "outcome"]
    assert actors == ["staff:alice", "staff:carol"], record["events"]
