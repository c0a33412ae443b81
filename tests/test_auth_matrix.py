"""Who may do what, end to end against a real server.

HTTP: every endpoint x every kind of credential (none, garbage, signed with another secret,
expired, shopper, staff, operator). A refusal is 401/403 with a JSON error body and nothing
else, and leaves no trace; an admitted role gets its data. Conversation records are only
visible to their shopper, the staff who handled them and operators.

WebSocket: nothing but `hello` and `ping` works before `hello`; a bad token never attaches;
every role-restricted message type refuses every other role with `forbidden`; a shopper
cannot touch another shopper's conversation.

Most tests share one module-scoped server populated once (see `world`), so the matrix stays
fast; tests that need a pristine server (the shopper-token limiter) use `server`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.web import RouteDef

from signaling import garments_api, http_api, reports_api
from signaling.auth import TokenIssuer
from signaling.model import Role
from signaling.protocol import INBOUND, parse_inbound

from .harness import SECRET, ServerProcess, WsClient, http, seeded_server

pytestmark = pytest.mark.integration

OTHER_SECRET = "another-secret-of-at-least-32-bytes-long!!"
SHOPPER_A, SHOPPER_B, SHOPPER_C = "shp_alpha", "shp_beta", "shp_gamma"
SECRET_LINE = "my card ends in 4242, do not tell anyone"


# The shared world ---------------------------------------------------------------------------
@dataclass
class World:
    server: ServerProcess
    cid_a: str  # shopper A, handled by alice, closed
    cid_t: str  # shopper A, alice accepted then transferred to carol, closed
    cid_b: str  # shopper B, handled by dave, closed
    cid_c: str  # shopper C, nobody online: missed, async message left, answered by alice
    mid: int  # that async message (store lyon, skill guitars)

    @property
    def base(self) -> str:
        return self.server.base_url

    def token(self, role: Role, subject: str) -> str:
        return self.server.token(role, subject)


async def _online(server: ServerProcess, staff_id: str) -> WsClient:
    client = await WsClient.connect(server.ws_url, server.token(Role.STAFF, staff_id))
    await client.ok("presence.set", status="online")
    return client


async def _populate(server: ServerProcess) -> dict[str, Any]:
    shopper_a = await WsClient.connect(server.ws_url, server.token(Role.SHOPPER, SHOPPER_A))
    shopper_b = await WsClient.connect(server.ws_url, server.token(Role.SHOPPER, SHOPPER_B))
    shopper_c = await WsClient.connect(server.ws_url, server.token(Role.SHOPPER, SHOPPER_C))
    alice = await _online(server, "alice")
    try:
        # A talks with alice.
        opened = await shopper_a.ok("conversation.open", store="lyon", skill="guitars",
                                    language="en")
        cid_a = opened["conversation"]["conversation_id"]
        await alice.expect("conversation.offered", conversation__conversation_id=cid_a)
        await alice.ok("conversation.accept", conversation_id=cid_a)
        await shopper_a.ok("chat.send", conversation_id=cid_a, text=SECRET_LINE)
        await alice.ok("chat.send", conversation_id=cid_a, text="Noted.")
        await alice.ok("conversation.close", conversation_id=cid_a)

        # A again: alice accepts, then hands over to carol, who closes.
        carol = await _online(server, "carol")
        opened = await shopper_a.ok("conversation.open", store="lyon", skill="guitars",
                                    language="en")
        cid_t = opened["conversation"]["conversation_id"]
        await alice.expect("conversation.offered", conversation__conversation_id=cid_t)
        await alice.ok("conversation.accept", conversation_id=cid_t)
        await shopper_a.ok("chat.send", conversation_id=cid_t, text="Transfer me please")
        await alice.ok("conversation.transfer", conversation_id=cid_t, to_staff="carol")
        await carol.expect("conversation.offered", conversation__conversation_id=cid_t)
        await carol.ok("conversation.accept", conversation_id=cid_t)
        await carol.ok("conversation.close", conversation_id=cid_t)
        await carol.ok("presence.set", status="offline")
        await alice.ok("presence.set", status="offline")

        # B talks with dave (the only one online).
        dave = await _online(server, "dave")
        opened = await shopper_b.ok("conversation.open", store="lyon", skill="guitars",
                                    language="en")
        cid_b = opened["conversation"]["conversation_id"]
        await dave.expect("conversation.offered", conversation__conversation_id=cid_b)
        await dave.ok("conversation.accept", conversation_id=cid_b)
        await shopper_b.ok("chat.send", conversation_id=cid_b, text="B's question")
        await dave.ok("conversation.close", conversation_id=cid_b)
        await dave.ok("presence.set", status="offline")

        # C finds nobody (missed_after_s is 1 s here) and leaves a message.
        opened = await shopper_c.ok("conversation.open", store="lyon", skill="guitars",
                                    language="en")
        cid_c = opened["conversation"]["conversation_id"]
        await shopper_c.expect("conversation.missed", conversation_id=cid_c, timeout=10)
        left = await shopper_c.ok("async.leave", conversation_id=cid_c,
                                  text="Do you have a left-handed one?",
                                  contact="gamma@example.com")
        mid = left["async_message"]["id"]
        # alice answers it, which makes her one of the staff who handled cid_c.
        status, _ = await http("POST", f"{server.base_url}/api/async-messages/{mid}/answer",
                               server.token(Role.STAFF, "alice"), {"answer": "Yes we do"})
        assert status == 200
        for client in (carol, dave):
            await client.close()
    finally:
        for client in (alice, shopper_a, shopper_b, shopper_c):
            await client.close()
    return {"cid_a": cid_a, "cid_t": cid_t, "cid_b": cid_b, "cid_c": cid_c, "mid": mid}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    with seeded_server(tmp_path_factory.mktemp("auth-matrix"), _populate,
                       missed_after_s=1.0) as (server, data):
        yield World(server=server, **data)


# Credentials ----------------------------------------------------------------------------------
CREDENTIALS = ["none", "garbage", "wrong_secret", "expired", "shopper", "staff", "operator"]
# What a refused credential gets, for those that are refused whatever the endpoint.
UNAUTHENTICATED = {
    "none": (401, "unauthenticated"),
    "garbage": (401, "invalid_token"),
    "wrong_secret": (401, "invalid_token"),
    "expired": (401, "expired_token"),
}
ROLE_OF = {"shopper": Role.SHOPPER, "staff": Role.STAFF, "operator": Role.OPERATOR}


def credential(world: World, name: str) -> str | None:
    """The token for a credential kind; the role ones belong to shopper A, alice and ops."""
    issuer = world.server.issuer
    if name == "none":
        return None
    if name == "garbage":
        return "not-a-jwt.at-all.really"
    if name == "wrong_secret":
        # An operator token in every respect but the key.
        return TokenIssuer(OTHER_SECRET).mint(Role.OPERATOR, "ops", 3600)
    if name == "expired":
        return issuer.mint(Role.OPERATOR, "ops", 60, now=time.time() - 3600)
    return issuer.mint(ROLE_OF[name], {"shopper": SHOPPER_A, "staff": "alice",
                                      "operator": "ops"}[name], 3600)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # formatted with the world's ids and the credential name
    roles: frozenset[Role]
    data_key: str  # the top-level key an admitted caller gets
    body: dict[str, Any] | None = None


_ALL = frozenset(Role)


def _garment_png() -> str:
    """A small valid RGBA garment PNG, base64, for the upload endpoint."""
    import base64

    import cv2
    import numpy as np

    image = np.zeros((40, 40, 4), np.uint8)
    image[10:, 5:35] = (200, 50, 50, 255)
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()


ENDPOINTS: dict[str, Endpoint] = {
    "list_conversations": Endpoint("GET", "/api/conversations", _ALL, "conversations"),
    "get_conversation": Endpoint("GET", "/api/conversations/{cid_a}", _ALL, "conversation"),
    "report_outcome": Endpoint(
        "POST", "/api/conversations/{cid_a}/outcome", frozenset({Role.OPERATOR, Role.STAFF}),
        "conversation_id", {"order_placed": True, "order_value": "{price}", "currency": "EUR"}),
    "list_async": Endpoint("GET", "/api/async-messages",
                           frozenset({Role.STAFF, Role.OPERATOR}), "async_messages"),
    "answer_async": Endpoint("POST", "/api/async-messages/{mid}/answer",
                             frozenset({Role.STAFF}), "async_message",
                             {"answer": "answer by {cred}"}),
    "list_stores": Endpoint("GET", "/api/stores", frozenset({Role.OPERATOR}), "stores"),
    "put_store": Endpoint("PUT", "/api/stores/matrix-{cred}", frozenset({Role.OPERATOR}),
                          "store", {"name": "Store by {cred}"}),
    "list_staff": Endpoint("GET", "/api/staff", frozenset({Role.OPERATOR}), "staff"),
    "put_staff": Endpoint("PUT", "/api/staff/matrix-{cred}", frozenset({Role.OPERATOR}),
                          "staff", {"name": "Staff by {cred}", "store": "lyon"}),
    "media_sessions": Endpoint("GET", "/api/media-sessions", frozenset({Role.OPERATOR}),
                               "media_sessions"),
    "list_garments": Endpoint("GET", "/api/garments", _ALL, "garments"),
    # The operator's upload is the garment its delete (below, run after it) removes.
    "add_garment": Endpoint("POST", "/api/garments", frozenset({Role.OPERATOR}), "garment",
                            {"id": "matrix-{cred}", "name": "Tee by {cred}", "sku": "M-1",
                             "category": "top", "anchors": {"neck": [20, 10],
                                                            "shoulder_width": 30},
                             "image_base64": _garment_png()}),
    "delete_garment": Endpoint("DELETE", "/api/garments/matrix-{cred}",
                               frozenset({Role.OPERATOR}), "garment"),
    "report_kpis": Endpoint("GET", "/api/reports/kpis", frozenset({Role.OPERATOR}), "figures"),
    "report_staff": Endpoint("GET", "/api/reports/staff", frozenset({Role.OPERATOR}), "staff"),
    "report_staffing": Endpoint("GET", "/api/reports/staffing", frozenset({Role.OPERATOR}),
                                "stores"),
    "report_daily": Endpoint("GET", "/api/reports/daily", frozenset({Role.OPERATOR}), "days"),
    # An HTML file, not JSON: an admitted caller gets the document itself.
    "report_weekly": Endpoint("GET", "/api/reports/weekly", frozenset({Role.OPERATOR}),
                              "<!doctype html>"),
}
PRICE_OF = {name: 100.0 + i for i, name in enumerate(CREDENTIALS)}


def _fill(value: Any, subs: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    if value == "{price}":
        return subs["price"]
    if isinstance(value, str):
        return value.format(**subs)
    return value


def expected(endpoint: Endpoint, cred: str) -> tuple[int, str | None]:
    if cred in UNAUTHENTICATED:
        return UNAUTHENTICATED[cred]
    return (200, None) if ROLE_OF[cred] in endpoint.roles else (403, "forbidden")


def assert_refusal(status: int, body: Any, want_status: int, want_code: str) -> None:
    assert status == want_status, (status, body)
    # The documented error shape and nothing else: no data leaks beside a refusal.
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == want_code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "details"}, body


async def _no_trace(world: World, name: str, cred: str) -> None:
    """A refused write changed nothing (checked with an operator's eyes)."""
    ops = world.token(Role.OPERATOR, "auditor")
    if name == "put_store":
        _, body = await http("GET", world.base + "/api/stores", ops)
        assert f"matrix-{cred}" not in {s["id"] for s in body["stores"]}
    elif name == "put_staff":
        _, body = await http("GET", world.base + "/api/staff", ops)
        assert f"matrix-{cred}" not in {s["id"] for s in body["staff"]}
    elif name == "report_outcome":
        _, body = await http("GET", f"{world.base}/api/conversations/{world.cid_a}", ops)
        values = [e["data"]["order_value"] for e in body["events"] if e["kind"] == "outcome"]
        assert PRICE_OF[cred] not in values, values
    elif name == "answer_async":
        _, body = await http("GET", world.base + "/api/async-messages", ops)
        (msg,) = [m for m in body["async_messages"] if m["id"] == world.mid]
        assert msg["answer"] != f"answer by {cred}", msg
    elif name == "add_garment":
        _, body = await http("GET", world.base + "/api/garments", ops)
        assert f"matrix-{cred}" not in {g["id"] for g in body["garments"]}


@pytest.mark.parametrize("cred", CREDENTIALS)
@pytest.mark.parametrize("name", list(ENDPOINTS))
async def test_http_endpoint_x_credential(world: World, name: str, cred: str) -> None:
    endpoint = ENDPOINTS[name]
    subs = {"cid_a": world.cid_a, "mid": world.mid, "cred": cred, "price": PRICE_OF[cred]}
    url = world.base + _fill(endpoint.path, subs)
    body = _fill(endpoint.body, subs) if endpoint.body is not None else None
    status, reply = await http(endpoint.method, url, credential(world, cred), body)
    want_status, want_code = expected(endpoint, cred)
    if want_code is not None:
        assert_refusal(status, reply, want_status, want_code)
        await _no_trace(world, name, cred)
        return
    assert status == 200, (status, reply)
    assert endpoint.data_key in reply, reply
    # The admitted call really did its job.
    if name == "get_conversation":
        assert reply["conversation"]["conversation_id"] == world.cid_a
        assert SECRET_LINE in [m["text"] for m in reply["messages"]]
    elif name == "report_outcome":
        assert reply["order_value"] == PRICE_OF[cred]
    elif name == "answer_async":
        assert reply["async_message"]["answer"] == f"answer by {cred}"
        assert reply["async_message"]["answered_by"] == "alice"
    elif name == "put_store":
        assert reply["store"]["id"] == f"matrix-{cred}"
    elif name == "put_staff":
        assert reply["staff"]["id"] == f"matrix-{cred}"
    elif name == "list_stores":
        assert {"lyon", "paris"} <= {s["id"] for s in reply["stores"]}
    elif name == "list_staff":
        assert {"alice", "bob", "carol", "dave"} <= {s["id"] for s in reply["staff"]}
    elif name == "list_async":
        assert world.mid in {m["id"] for m in reply["async_messages"]}


def test_matrix_covers_every_api_route() -> None:
    """A new endpoint must join the matrix (or the public list): compare with the router."""
    routed = {(r.method, r.path) for r in [*http_api.routes, *reports_api.routes,
                                           *garments_api.routes]
              if isinstance(r, RouteDef)}
    names = {"{cid_a}": "{conversation_id}", "{mid}": "{message_id}"}
    covered = set()
    for e in ENDPOINTS.values():
        path = e.path
        for ours, theirs in names.items():
            path = path.replace(ours, theirs)
        path = path.replace("stores/matrix-{cred}", "stores/{store_id}")
        path = path.replace("staff/matrix-{cred}", "staff/{staff_id}")
        path = path.replace("garments/matrix-{cred}", "garments/{garment_id}")
        covered.add((e.method, path))
    public = {(method, path.partition("?")[0]) for method, path, _ in PUBLIC.values()}
    assert covered <= routed, covered - routed
    assert routed - public == covered, routed - public - covered


PUBLIC = {
    "availability": ("GET", "/api/availability?store=lyon", "chat"),
    "qualification": ("GET", "/api/qualification", "questions"),
    "openapi": ("GET", "/api/openapi.json", "paths"),
    "shopper_token": ("POST", "/api/shopper-token", "token"),
}


@pytest.mark.parametrize("cred", CREDENTIALS)
@pytest.mark.parametrize("name", list(PUBLIC))
async def test_public_endpoints_answer_whatever_the_credential(world: World, name: str,
                                                               cred: str) -> None:
    method, path, key = PUBLIC[name]
    status, body = await http(method, world.base + path, credential(world, cred))
    assert status == 200, body
    assert key in body, body
    if name == "shopper_token":
        # Always a fresh shopper identity: a caller's token is never echoed or upgraded.
        who = world.server.issuer.verify(body["token"])
        assert who.role is Role.SHOPPER and who.subject == body["shopper_id"]
        assert who.subject not in (SHOPPER_A, "alice", "ops")


# Ownership of conversation records ------------------------------------------------------------
async def _get(world: World, cid: str, role: Role, subject: str) -> tuple[int, Any]:
    return await http("GET", f"{world.base}/api/conversations/{cid}", world.token(role, subject))


async def test_shopper_reads_only_their_own_conversations(world: World) -> None:
    status, own = await _get(world, world.cid_a, Role.SHOPPER, SHOPPER_A)
    assert status == 200 and SECRET_LINE in [m["text"] for m in own["messages"]]

    status, body = await _get(world, world.cid_a, Role.SHOPPER, SHOPPER_B)
    assert_refusal(status, body, 404, "not_found")
    assert SECRET_LINE not in json.dumps(body)
    # Indistinguishable from an id that does not exist, so ids cannot be probed.
    status, missing = await _get(world, "cnv_doesnotexist", Role.SHOPPER, SHOPPER_B)
    assert_refusal(status, missing, 404, "not_found")

    status, body = await _get(world, world.cid_b, Role.SHOPPER, SHOPPER_B)
    assert status == 200 and [m["text"] for m in body["messages"]] == ["B's question"]
    status, body = await _get(world, world.cid_b, Role.SHOPPER, SHOPPER_A)
    assert_refusal(status, body, 404, "not_found")


async def test_shopper_list_holds_only_their_own_conversations(world: World) -> None:
    lists = {}
    for subject in (SHOPPER_A, SHOPPER_B, SHOPPER_C, "shp_nobody"):
        status, body = await http("GET", world.base + "/api/conversations",
                                  world.token(Role.SHOPPER, subject))
        assert status == 200, body
        lists[subject] = {c["conversation_id"] for c in body["conversations"]}
        assert {c["shopper_id"] for c in body["conversations"]} <= {subject}
    assert lists == {SHOPPER_A: {world.cid_a, world.cid_t}, SHOPPER_B: {world.cid_b},
                     SHOPPER_C: {world.cid_c}, "shp_nobody": set()}
    # Query parameters cannot widen a shopper's view.
    status, body = await http("GET", world.base + "/api/conversations?staff=dave&store=lyon",
                              world.token(Role.SHOPPER, SHOPPER_A))
    assert status == 200
    assert {c["conversation_id"] for c in body["conversations"]} <= {world.cid_a, world.cid_t}


async def test_staff_read_only_conversations_they_handled(world: World) -> None:
    readable = {
        # cid_t: she handled it before the transfer; cid_c: she answered its message.
        "alice": {world.cid_a, world.cid_t, world.cid_c},
        "carol": {world.cid_t},
        "dave": {world.cid_b},
        "bob": set(),
    }
    for staff_id, allowed in readable.items():
        for cid in (world.cid_a, world.cid_t, world.cid_b, world.cid_c):
            status, body = await _get(world, cid, Role.STAFF, staff_id)
            if cid in allowed:
                assert status == 200, (staff_id, cid, body)
                assert body["conversation"]["conversation_id"] == cid
            else:
                assert_refusal(status, body, 404, "not_found")
    # The list is what they hold now.
    status, body = await http("GET", world.base + "/api/conversations",
                              world.token(Role.STAFF, "dave"))
    ids = {c["conversation_id"] for c in body["conversations"]}
    assert world.cid_b in ids and not ids & {world.cid_a, world.cid_t, world.cid_c}


async def test_operators_reach_everything(world: World) -> None:
    ops = world.token(Role.OPERATOR, "ops")
    for cid in (world.cid_a, world.cid_t, world.cid_b, world.cid_c):
        status, body = await _get(world, cid, Role.OPERATOR, "ops")
        assert status == 200 and body["conversation"]["conversation_id"] == cid
    status, body = await http("GET", world.base + "/api/conversations?limit=1000", ops)
    ids = {c["conversation_id"] for c in body["conversations"]}
    assert {world.cid_a, world.cid_t, world.cid_b, world.cid_c} <= ids
    status, body = await http("GET", world.base + "/api/conversations?staff=dave", ops)
    ids = {c["conversation_id"] for c in body["conversations"]}
    assert world.cid_b in ids and world.cid_a not in ids
    _, body = await _get(world, world.cid_c, Role.OPERATOR, "ops")
    assert [a["id"] for a in body["async_messages"]] == [world.mid]


async def test_async_messages_only_for_staff_who_may_answer_them(world: World) -> None:
    def listing(staff_id: str):
        return http("GET", world.base + "/api/async-messages", world.token(Role.STAFF, staff_id))

    for staff_id, sees in (("alice", True), ("dave", True), ("bob", False), ("carol", False)):
        status, body = await listing(staff_id)
        assert status == 200
        assert (world.mid in {m["id"] for m in body["async_messages"]}) is sees, staff_id
    # bob (pianos) and carol (paris) cannot answer it: not found, and nothing changes.
    for staff_id in ("bob", "carol"):
        status, body = await http("POST", f"{world.base}/api/async-messages/{world.mid}/answer",
                                  world.token(Role.STAFF, staff_id),
                                  {"answer": f"hijack by {staff_id}"})
        assert_refusal(status, body, 404, "not_found")
    status, body = await http("POST", f"{world.base}/api/async-messages/not-a-number/answer",
                              world.token(Role.STAFF, "alice"), {"answer": "x"})
    assert_refusal(status, body, 404, "not_found")
    status, body = await http("POST", f"{world.base}/api/async-messages/999999/answer",
                              world.token(Role.STAFF, "alice"), {"answer": "x"})
    assert_refusal(status, body, 404, "not_found")
    _, body = await http("GET", world.base + "/api/async-messages",
                         world.token(Role.OPERATOR, "ops"))
    (msg,) = [m for m in body["async_messages"] if m["id"] == world.mid]
    assert not (msg["answer"] or "").startswith("hijack")
    # A well-signed staff token for somebody who is not on the staff list gets nothing.
    status, body = await listing("ghost")
    assert_refusal(status, body, 403, "forbidden")


async def test_shopper_token_endpoint_is_rate_limited_per_address(server) -> None:
    url = server.base_url + "/api/shopper-token"
    tokens = set()
    for _ in range(10):
        status, body = await http("POST", url)
        assert status == 200, body
        tokens.add(body["token"])
    assert len(tokens) == 10
    status, body = await http("POST", url)
    assert_refusal(status, body, 429, "rate_limited")
    # The limiter guards that endpoint only: other traffic from the address goes on.
    status, _ = await http("GET", server.base_url + "/api/availability")
    assert status == 200


# WebSocket ------------------------------------------------------------------------------------
# A valid example of every inbound type: the role check comes after validation, so only a
# valid message proves that a refusal is about the role.
EXAMPLES: dict[str, dict[str, Any]] = {
    "hello": {"token": "placeholder"},
    "ping": {},
    "presence.set": {"status": "away"},
    "conversation.open": {"store": "lyon", "skill": "guitars", "language": "en"},
    "conversation.resume": {"conversation_id": "cnv_nope", "after_seq": 0},
    "conversation.accept": {"conversation_id": "cnv_nope"},
    "conversation.decline": {"conversation_id": "cnv_nope", "reason": "busy"},
    "conversation.transfer": {"conversation_id": "cnv_nope", "to_skill": "pianos"},
    "conversation.close": {"conversation_id": "cnv_nope"},
    "chat.send": {"conversation_id": "cnv_nope", "text": "hello"},
    "chat.typing": {"conversation_id": "cnv_nope", "typing": True},
    "chat.read": {"conversation_id": "cnv_nope", "seq": 1},
    "call.propose": {"conversation_id": "cnv_nope", "kind": "video"},
    "call.accept": {"call_id": "call_nope"},
    "call.decline": {"call_id": "call_nope"},
    "call.end": {"call_id": "call_nope"},
    "call.invite": {"call_id": "call_nope", "staff_id": "bob"},
    "call.join": {"call_id": "call_nope"},
    "call.leave": {"call_id": "call_nope"},
    "media.offer": {"call_id": "call_nope", "sdp": "v=0\r\n"},
    "media.answer": {"call_id": "call_nope", "sdp": "v=0\r\n"},
    "media.state": {"call_id": "call_nope", "camera": "off"},
    "media.candidate": {"call_id": "call_nope", "candidate": "", "ufrag": "u"},
    "media.connection": {"call_id": "call_nope", "state": "failed"},
    "tryon.set": {"call_id": "call_nope", "enabled": True, "garment_id": "sample-tshirt"},
    "feedback.submit": {"conversation_id": "cnv_nope", "satisfaction": 4, "recommendation": 8},
    "async.leave": {"conversation_id": "cnv_nope", "text": "Call me back",
                    "contact": "me@example.com"},
    "queue.list": {},
}
SUBJECT_OF = {Role.SHOPPER: "shp_roles", Role.STAFF: "bob", Role.OPERATOR: "ops"}
FORBIDDEN_PAIRS = [(t, r) for t, model in INBOUND.items() for r in Role if r not in model.roles]
ALLOWED_PAIRS = [(t, r) for t, model in INBOUND.items() for r in Role
                 if r in model.roles and t not in ("hello", "ping")]


def test_every_inbound_type_has_a_valid_example() -> None:
    assert set(EXAMPLES) == set(INBOUND)
    for kind, fields in EXAMPLES.items():
        msg = parse_inbound(json.dumps({"type": kind, "id": "x", **fields}), 1 << 20)
        assert msg.type == kind
    # The matrix below is not empty by accident.
    assert len(FORBIDDEN_PAIRS) >= 20


@pytest.mark.parametrize("kind", [t for t in INBOUND if t not in ("hello", "ping")])
async def test_requests_before_hello_are_unauthenticated(world: World, connect,
                                                         kind: str) -> None:
    client = await connect(world.server)
    reply = await client.fail(kind, "unauthenticated", **EXAMPLES[kind])
    assert reply["id"].startswith("r")
    # Ping is allowed before hello and the connection is still usable.
    assert (await client.send("ping"))["type"] == "pong"
    await client.fail("queue.list", "unauthenticated")


@pytest.mark.parametrize(("cred", "code"), [
    ("garbage", "invalid_token"), ("wrong_secret", "invalid_token"),
    ("expired", "expired_token"), ("wrong_secret_staff", "invalid_token"),
    ("unknown_staff", "forbidden"), ("other_issuer", "invalid_token"),
])
async def test_hello_with_a_bad_token_never_attaches(world: World, connect, cred: str,
                                                     code: str) -> None:
    token = {
        "garbage": "garbage",
        "wrong_secret": TokenIssuer(OTHER_SECRET).mint(Role.OPERATOR, "ops", 3600),
        "wrong_secret_staff": TokenIssuer(OTHER_SECRET).mint(Role.STAFF, "alice", 3600),
        "expired": world.server.issuer.mint(Role.STAFF, "alice", 60, now=time.time() - 3600),
        "unknown_staff": world.token(Role.STAFF, "mallory"),
        "other_issuer": TokenIssuer(SECRET, issuer="elsewhere").mint(
            Role.OPERATOR, "ops", 3600),
    }[cred]
    client = await connect(world.server)
    reply = await client.fail("hello", code, token=token)
    assert reply["id"] is not None
    # Still anonymous: nothing restricted works, but the connection goes on...
    await client.fail("queue.list", "unauthenticated")
    await client.fail("conversation.open", "unauthenticated")
    # ...and a good hello afterwards is welcome.
    welcome = await client.send("hello", token=world.token(Role.STAFF, "bob"))
    assert welcome["type"] == "welcome" and welcome["subject"] == "bob"
    await client.ok("queue.list")


async def test_second_hello_is_refused(world: World, connect) -> None:
    client = await connect(world.server, Role.SHOPPER, "shp_twice")
    await client.fail("hello", "invalid_state", token=world.token(Role.OPERATOR, "ops"))
    # Still the shopper: operator-only behaviour did not leak in.
    await client.fail("queue.list", "forbidden")
    await client.fail("presence.set", "forbidden", status="online")


@pytest.mark.parametrize(("kind", "role"), FORBIDDEN_PAIRS,
                         ids=[f"{t}-{r.value}" for t, r in FORBIDDEN_PAIRS])
async def test_role_restricted_message_refused_for_other_roles(world: World, connect,
                                                               kind: str, role: Role) -> None:
    client = await connect(world.server, role, SUBJECT_OF[role])
    reply = await client.fail(kind, "forbidden", **EXAMPLES[kind])
    assert reply["id"].startswith("r")
    assert kind in reply["message"]
    assert (await client.send("ping"))["type"] == "pong"


@pytest.mark.parametrize(("kind", "role"), ALLOWED_PAIRS,
                         ids=[f"{t}-{r.value}" for t, r in ALLOWED_PAIRS])
async def test_admitted_roles_pass_the_role_check(world: World, connect, kind: str,
                                                  role: Role) -> None:
    """Control for the test above: the same example from an admitted role is not refused
    for its role (it may still be not_found: the ids in the examples do not exist)."""
    client = await connect(world.server, role, SUBJECT_OF[role])
    reply = await client.send(kind, **EXAMPLES[kind])
    assert reply["type"] == "ack" or reply["code"] in ("not_found", "invalid_state"), reply
    if kind == "conversation.open":  # leave nothing live behind for the other tests
        cid = reply["result"]["conversation"]["conversation_id"]
        await client.ok("conversation.close", conversation_id=cid)


async def test_shopper_cannot_act_on_another_shoppers_conversation(world: World,
                                                                   connect) -> None:
    dave = await connect(world.server, Role.STAFF, "dave")
    await dave.ok("presence.set", status="online")
    owner = await connect(world.server, Role.SHOPPER, "shp_owner")
    intruder = await connect(world.server, Role.SHOPPER, "shp_intruder")
    bob = await connect(world.server, Role.STAFF, "bob")
    try:
        opened = await owner.ok("conversation.open", store="lyon", skill="guitars",
                                language="en")
        cid = opened["conversation"]["conversation_id"]
        await dave.expect("conversation.offered", conversation__conversation_id=cid)
        await dave.ok("conversation.accept", conversation_id=cid)
        await owner.ok("chat.send", conversation_id=cid, text="owner's words")
        await dave.expect("chat.message")

        attempts = [
            ("chat.send", {"conversation_id": cid, "text": "intruder's words"}),
            ("chat.typing", {"conversation_id": cid, "typing": True}),
            ("chat.read", {"conversation_id": cid, "seq": 1}),
            ("call.propose", {"conversation_id": cid, "kind": "audio"}),
            ("conversation.resume", {"conversation_id": cid}),
            ("conversation.close", {"conversation_id": cid}),
            ("feedback.submit", {"conversation_id": cid, "satisfaction": 1,
                                 "recommendation": 0}),
            ("async.leave", {"conversation_id": cid, "text": "x", "contact": "x@x.x"}),
        ]
        for kind, fields in attempts:
            reply = await intruder.fail(kind, "not_found", **fields)
            assert "owner's words" not in json.dumps(reply)
        # A staff member who does not hold it is just as much a stranger.
        for kind, fields in attempts[:6]:
            await bob.fail(kind, "not_found", **fields)

        # Nothing happened: still open, nothing relayed to dave, the owner carries on.
        assert not [e for e in dave.events if e["type"] in
                    ("chat.message", "chat.typing", "chat.read", "call.proposed",
                     "conversation.closed")], dave.events
        resumed = await owner.ok("conversation.resume", conversation_id=cid)
        assert resumed["conversation"]["state"] == "accepted"
        assert [m["text"] for m in resumed["messages"]] == ["owner's words"]
        await owner.ok("chat.send", conversation_id=cid, text="still here")
        got = await dave.expect("chat.message")
        assert got["message"]["text"] == "still here"
        await dave.ok("conversation.close", conversation_id=cid)
        await owner.expect("conversation.closed", conversation_id=cid)
        # The intruder cannot rate it either; the owner can, once.
        await intruder.fail("feedback.submit", "not_found", conversation_id=cid,
                            satisfaction=1, recommendation=0)
        await owner.ok("feedback.submit", conversation_id=cid, satisfaction=5,
                       recommendation=10)
    finally:
        await dave.ok("presence.set", status="offline")


async def test_shopper_cannot_resume_rate_or_leave_message_on_closed_foreign_ones(
        world: World, connect) -> None:
    intruder = await connect(world.server, Role.SHOPPER, SHOPPER_B)
    await intruder.fail("conversation.resume", "not_found", conversation_id=world.cid_a)
    await intruder.fail("feedback.submit", "not_found", conversation_id=world.cid_a,
                        satisfaction=1, recommendation=0)
    await intruder.fail("async.leave", "not_found", conversation_id=world.cid_c,
                        text="spam", contact="spam@example.com")
    # B's welcome lists only B's own conversation.
    assert {c["conversation_id"] for c in intruder.welcome["conversations"]} == {world.cid_b}
    owner = await connect(world.server, Role.SHOPPER, SHOPPER_A)
    resumed = await owner.ok("conversation.resume", conversation_id=world.cid_a)
    assert SECRET_LINE in [m["text"] for m in resumed["messages"]]
    _, record = await http("GET", f"{world.base}/api/conversations/{world.cid_c}",
                           world.token(Role.OPERATOR, "ops"))
    assert len(record["async_messages"]) == 1 and record["rating"] is None


async def test_token_expiring_during_a_connection_is_cut_off(world: World, connect) -> None:
    now = time.time()
    token = world.server.issuer.mint(Role.STAFF, "bob", 2, now=now)
    client = await connect(world.server, token=token)
    expires_at = client.welcome["token_expires_at"]
    await client.ok("queue.list")
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.2)
    await client.fail("queue.list", "expired_token")
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.close_code == 4401
