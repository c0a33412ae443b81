"""Bad input never crashes the server and never ends a well-behaved connection.

Each malformed WebSocket frame gets exactly one `error` reply with a stable code, echoing the
request id whenever one could be read, and the same connection keeps working. Floods are
answered with `rate_limited`, then cut off (1008) without disturbing anybody else; a
connection that never says hello is closed (4401). The HTTP API answers bad bodies with 400,
413 and the JSON error shape. After all of it the server is alive and serves a consultation.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.model import Role
from signaling.protocol import ErrorCode
from signaling.ws import HELLO_TIMEOUT_S, MAX_RATE_STRIKES

from .conftest import new_shopper
from .harness import ServerProcess, WsClient, http

pytestmark = pytest.mark.integration

MAX_BYTES = 1024
STABLE_CODES = {code.value for code in ErrorCode}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    """One server with a 1 KiB frame limit, shared by the tests that do not flood."""
    workdir: Path = tmp_path_factory.mktemp("protocol-errors")
    server = ServerProcess(workdir, max_message_bytes=MAX_BYTES)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def wait_until(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def still_serving(server: ServerProcess, connect) -> str:
    """The process is alive, healthy, and a whole consultation works; returns its id."""
    assert server.alive
    status, body = await http("GET", server.base_url + "/healthz")
    assert status == 200 and body == {"status": "ok"}
    staff = await connect(server, Role.STAFF, "alice")
    try:
        await staff.ok("presence.set", status="online")
        shopper = await connect(server, token=await new_shopper(server))
        opened = await shopper.ok("conversation.open", store="lyon", skill="guitars",
                                  language="en")
        cid = opened["conversation"]["conversation_id"]
        await staff.expect("conversation.offered", conversation__conversation_id=cid)
        await staff.ok("conversation.accept", conversation_id=cid)
        await shopper.ok("chat.send", conversation_id=cid, text="still there?")
        assert (await staff.expect("chat.message"))["message"]["text"] == "still there?"
        await staff.ok("conversation.close", conversation_id=cid)
        await shopper.expect("conversation.closed", conversation_id=cid)
    finally:
        await staff.close()  # offline again, so the next consultation routes the same way
    return cid


async def expect_error(client: WsClient, code: str, request_id: str | None) -> dict[str, Any]:
    """The one error reply to a raw frame (raw frames bypass the harness's id matching)."""
    reply = await client.expect("error", timeout=5)
    assert reply["code"] == code, reply
    assert reply["id"] == request_id, reply
    assert reply["code"] in STABLE_CODES
    assert isinstance(reply["message"], str) and reply["message"]
    return reply


def frame(**fields: Any) -> str:
    return json.dumps(fields)


# (frame, code, echoed id, fields named in details)
CASES: dict[str, tuple[str | bytes, str, str | None, set[str]]] = {
    "malformed_json": ("{not json", "invalid_json", None, set()),
    "truncated_json": ('{"type": "ping", "id": "t1"', "invalid_json", None, set()),
    "empty_frame": ("", "invalid_json", None, set()),
    "json_array": ('[{"type": "ping", "id": "a1"}]', "invalid_message", None, set()),
    "json_string": ('"ping"', "invalid_message", None, set()),
    "json_number": ("42", "invalid_message", None, set()),
    "json_null": ("null", "invalid_message", None, set()),
    "missing_type": (frame(id="m1"), "invalid_message", "m1", set()),
    "non_string_type": (frame(type=5, id="m2"), "invalid_message", "m2", set()),
    "null_type": (frame(type=None, id="m3"), "invalid_message", "m3", set()),
    "unknown_type": (frame(type="conversation.explode", id="m4"), "unknown_type", "m4",
                     set()),
    "wrong_field_types": (frame(type="chat.read", id="m5", conversation_id=123, seq="abc"),
                          "invalid_message", "m5", {"conversation_id", "seq"}),
    "wrong_bool_type": (frame(type="chat.typing", id="m6", conversation_id="c", typing=[1]),
                        "invalid_message", "m6", {"typing"}),
    "id_not_a_string": (frame(type="ping", id=123), "invalid_message", None, {"id"}),
    "id_too_long": (frame(type="ping", id="x" * 65), "invalid_message", None, {"id"}),
    "extra_field": (frame(type="ping", id="m7", admin=True), "invalid_message", "m7",
                    {"admin"}),
    "extra_field_in_card": (
        frame(type="chat.send", id="m8", conversation_id="c",
              card={"sku": "S", "title": "T", "colour": "red"}),
        "invalid_message", "m8", {"card.colour"}),
    "missing_required_field": (frame(type="chat.send", id="m9", text="hi"),
                               "invalid_message", "m9", {"conversation_id"}),
    "satisfaction_out_of_range": (
        frame(type="feedback.submit", id="m10", conversation_id="c", satisfaction=9,
              recommendation=5),
        "invalid_message", "m10", {"satisfaction"}),
    "recommendation_negative": (
        frame(type="feedback.submit", id="m11", conversation_id="c", satisfaction=3,
              recommendation=-1),
        "invalid_message", "m11", {"recommendation"}),
    "after_seq_negative": (frame(type="conversation.resume", id="m12", conversation_id="c",
                                 after_seq=-1), "invalid_message", "m12", {"after_seq"}),
    "transfer_both_targets": (
        frame(type="conversation.transfer", id="m13", conversation_id="c", to_staff="bob",
              to_skill="pianos"), "invalid_message", "m13", set()),
    "transfer_no_target": (frame(type="conversation.transfer", id="m14", conversation_id="c"),
                           "invalid_message", "m14", set()),
    "chat_neither_text_nor_card": (frame(type="chat.send", id="m15", conversation_id="c"),
                                   "invalid_message", "m15", set()),
    "chat_empty_text": (frame(type="chat.send", id="m16", conversation_id="c", text=""),
                        "invalid_message", "m16", {"text"}),
    "bad_enum": (frame(type="call.propose", id="m17", conversation_id="c", kind="hologram"),
                 "invalid_message", "m17", {"kind"}),
    "version_2": (frame(type="ping", id="v2", v=2), "unsupported_version", "v2", set()),
    "version_as_string": (frame(type="ping", id="v3", v="1"), "unsupported_version", "v3",
                          set()),
    "invalid_utf8_binary": (b'{"type": "ping", "id": "\xff\xfe"}', "invalid_json", None,
                            set()),
}
# Inputs the JSON decoder or pydantic accept but the protocol must not (see the report):
# too deep for the decoder's recursion limit, and numbers that overflow to infinity.
HOSTILE_CASES: dict[str, tuple[str | bytes, str, str | None, set[str]]] = {
    "deeply_nested_json": ("[" * 1000, "invalid_json", None, set()),
    "deeply_nested_field": ('{"type": "ping", "id": "n1", "x": ' + "[" * 990, "invalid_json",
                            None, set()),
    "card_price_infinite": (
        '{"type": "chat.send", "id": "m18", "conversation_id": "c", '
        '"card": {"sku": "S", "title": "T", "price": 1e999}}',
        "invalid_message", "m18", {"card.price"}),
}


@pytest.mark.parametrize("authenticated", [True, False], ids=["after_hello", "before_hello"])
@pytest.mark.parametrize("case", list(CASES) + list(HOSTILE_CASES))
async def test_bad_frame_gets_one_error_and_the_connection_goes_on(
        small: ServerProcess, connect, case: str, authenticated: bool) -> None:
    raw, code, request_id, fields = {**CASES, **HOSTILE_CASES}[case]
    assert len(raw if isinstance(raw, bytes) else raw.encode()) <= MAX_BYTES
    token = small.token(Role.SHOPPER, f"shp_{case}") if authenticated else None
    client = await connect(small, token=token)
    await client.raw(raw)
    reply = await expect_error(client, code, request_id)
    if fields:
        assert fields <= {d["field"] for d in reply["details"]}, reply
    # Exactly one reply, and the same connection still answers.
    assert (await client.send("ping"))["type"] == "pong"
    assert not [e for e in client.events if e.get("type") == "error"], client.events
    if authenticated:
        await client.fail("conversation.resume", "not_found", conversation_id="cnv_none")
    else:
        await client.fail("conversation.resume", "unauthenticated", conversation_id="c")


async def test_a_burst_of_garbage_then_normal_service(small: ServerProcess, connect) -> None:
    """All the bad frames back to back on one connection: one error each, in order."""
    client = await connect(small, Role.SHOPPER, "shp_garbage")
    for raw, _, _, _ in CASES.values():
        await client.raw(raw)
    await client.raw(frame(type="ping", id="after-garbage"))
    await wait_until(lambda: any(e.get("id") == "after-garbage" for e in client.events))
    replies = list(client.events)
    assert [r["type"] for r in replies] == ["error"] * len(CASES) + ["pong"]
    assert [(r["code"], r["id"]) for r in replies[:-1]] == [
        (code, request_id) for _, code, request_id, _ in CASES.values()]
    await still_serving(small, connect)


async def test_frame_size_limit_is_in_bytes_and_the_connection_goes_on(
        small: ServerProcess, connect) -> None:
    client = await connect(small, Role.SHOPPER, "shp_big")

    def chat(text: str) -> str:
        return json.dumps({"type": "chat.send", "id": "big", "conversation_id": "cnv_none",
                           "text": text}, ensure_ascii=False)

    overhead = len(chat("").encode())
    at_limit = chat("a" * (MAX_BYTES - overhead))
    assert len(at_limit.encode()) == MAX_BYTES
    await client.raw(at_limit)  # accepted as a frame: it fails later, for its conversation
    await expect_error(client, "not_found", "big")

    await client.raw(chat("a" * (MAX_BYTES - overhead + 1)))
    # Not parsed, but the id near the start of the frame is echoed.
    reply = await expect_error(client, "message_too_large", "big")
    assert str(MAX_BYTES) in reply["message"]
    # 600 characters but 1200 bytes: the limit counts bytes.
    await client.raw(chat("é" * 600))
    await expect_error(client, "message_too_large", "big")
    # Far above the limit but below the transport's backstop: still just an error reply.
    await client.raw(chat("a" * 100_000))
    await expect_error(client, "message_too_large", "big")
    await client.raw(chat("a" * 100_000).encode())
    await expect_error(client, "message_too_large", "big")
    # An id beyond the first 512 bytes is not looked for.
    late_id = json.dumps({"type": "chat.send", "conversation_id": "cnv_none",
                          "text": "a" * 2000, "id": "late"})
    await client.raw(late_id)
    await expect_error(client, "message_too_large", None)
    assert (await client.send("ping"))["type"] == "pong"
    await client.fail("conversation.resume", "not_found", conversation_id="cnv_none")


async def test_frame_above_the_transport_backstop_closes_only_that_connection(
        small: ServerProcess, connect) -> None:
    bystander = await connect(small, Role.SHOPPER, "shp_bystander")
    client = await connect(small, Role.SHOPPER, "shp_huge")
    try:
        await client.raw("x" * (2 << 20))
    except (ConnectionError, aiohttp.ClientError):
        pass  # the server may hang up while the frame is still being written
    await asyncio.wait_for(client.closed.wait(), 10)
    # 1009 "message too big"; 1006 when the hang-up races with the client still writing.
    assert client.close_code in (1009, 1006), client.close_code
    assert (await bystander.send("ping"))["type"] == "pong"
    await still_serving(small, connect)


async def test_rate_limited_then_recovers(server_factory, connect) -> None:
    server = server_factory(messages_per_second=5, message_burst=5)
    client = await connect(server, Role.SHOPPER, "shp_fast")  # hello spends one token
    await asyncio.sleep(0.3)  # and let it come back
    for i in range(50):
        await client.raw(frame(type="ping", id=f"f{i}"))
    await wait_until(lambda: len(client.events) >= 50)
    pongs = [e for e in client.events if e["type"] == "pong"]
    limited = [e for e in client.events if e["type"] == "error"]
    assert len(pongs) + len(limited) == 50
    assert 5 <= len(pongs) <= 8, len(pongs)  # the burst, plus what refilled meanwhile
    assert {(e["code"], e["id"]) for e in limited} == {("rate_limited", None)}
    # The burst is served first, in order.
    assert [p["id"] for p in pongs[:5]] == ["f0", "f1", "f2", "f3", "f4"]

    await asyncio.sleep(1.1)
    client.events.clear()
    for i in range(5):
        await client.raw(frame(type="ping", id=f"g{i}"))
    await wait_until(lambda: len(client.events) >= 5)
    assert [(e["type"], e["id"]) for e in client.events] == [
        ("pong", f"g{i}") for i in range(5)]
    await asyncio.sleep(0.3)
    await client.fail("conversation.resume", "not_found", conversation_id="cnv_none")
    assert not client.closed.is_set()


async def test_flooder_is_cut_off_and_others_are_unaffected(server_factory, connect) -> None:
    server = server_factory(messages_per_second=5, message_burst=5)
    bystander = await connect(server, Role.SHOPPER, "shp_calm")
    flooder = await connect(server, Role.SHOPPER, "shp_flood")
    sent = 0
    try:
        for i in range(MAX_RATE_STRIKES * 2):
            if flooder.closed.is_set():
                break
            await flooder.raw(frame(type="ping", id=f"x{i}"))
            sent += 1
    except (ConnectionError, aiohttp.ClientError):
        pass
    await asyncio.wait_for(flooder.closed.wait(), 10)
    assert flooder.close_code == 1008
    limited = [e for e in flooder.events if e["type"] == "error"]
    assert {e["code"] for e in limited} == {"rate_limited"}
    # Refused frames are answered until the strike allowance (MAX_RATE_STRIKES, refilling
    # at the message rate) runs out; the next one closes the socket.
    assert MAX_RATE_STRIKES <= len(limited) <= MAX_RATE_STRIKES + 10, (len(limited), sent)

    assert (await bystander.send("ping"))["type"] == "pong"
    await bystander.fail("conversation.resume", "not_found", conversation_id="cnv_none")
    await still_serving(server, connect)


async def test_connection_without_hello_is_closed(small: ServerProcess, connect) -> None:
    started = time.monotonic()
    silent = await connect(small)
    chatty = await connect(small)  # pings and a failed hello do not count as hello
    ok = await connect(small, Role.SHOPPER, "shp_patient")

    async def keep_pinging() -> None:
        await chatty.fail("hello", "invalid_token", token="nope")
        while not chatty.closed.is_set():
            with_reply = await chatty.send("ping")
            assert with_reply["type"] == "pong"
            await asyncio.sleep(1)

    pinger = asyncio.create_task(keep_pinging())
    await asyncio.wait_for(silent.closed.wait(), HELLO_TIMEOUT_S + 5)
    await asyncio.wait_for(chatty.closed.wait(), 5)
    pinger.cancel()
    assert time.monotonic() - started >= HELLO_TIMEOUT_S - 1
    assert silent.close_code == 4401 and chatty.close_code == 4401
    # The authenticated connection, just as idle, is still there.
    assert not ok.closed.is_set()
    assert (await ok.send("ping"))["type"] == "pong"
    await ok.fail("conversation.resume", "not_found", conversation_id="cnv_none")


# HTTP ---------------------------------------------------------------------------------------
HTTP_CASES: dict[str, tuple[bytes, int, str, set[str]]] = {
    "malformed_json": (b"{bad", 400, "invalid_json", set()),
    "truncated_json": (b'{"order_placed": true', 400, "invalid_json", set()),
    "invalid_utf8": (b'{"order_placed": "\xff"}', 400, "invalid_json", set()),
    "empty_body": (b"", 400, "invalid_message", set()),
    "json_array": (b"[]", 400, "invalid_message", set()),
    "wrong_field_type": (b'{"order_placed": "maybe", "order_value": "lots"}', 400,
                         "invalid_message", {"order_placed", "order_value"}),
    "missing_field": (b'{"order_value": 10}', 400, "invalid_message", {"order_placed"}),
    "extra_field": (b'{"order_placed": false, "discount": 5}', 400, "invalid_message",
                    {"discount"}),
    "negative_value": (b'{"order_placed": true, "order_value": -5, "currency": "EUR"}', 400,
                       "invalid_message", {"order_value"}),
    "bad_currency": (b'{"order_placed": true, "order_value": 5, "currency": "euro"}', 400,
                     "invalid_message", {"currency"}),
    "value_without_currency": (b'{"order_placed": true, "order_value": 5}', 400,
                               "invalid_message", set()),
    "too_large": (b'{"order_placed": true, "note": "' + b"x" * (70 * 1024) + b'"}', 413,
                  "message_too_large", set()),
}
HTTP_HOSTILE_CASES: dict[str, tuple[bytes, int, str, set[str]]] = {
    "deeply_nested_json": (b"[" * 5000, 400, "invalid_json", set()),
    "infinite_value": (b'{"order_placed": true, "order_value": 1e999, "currency": "EUR"}',
                       400, "invalid_message", {"order_value"}),
}


@pytest.fixture(scope="module")
def served_cids(small: ServerProcess) -> dict[str, str]:
    """Real, closed conversations on `small` to report outcomes against: one per group of
    cases, so that a failure in one group cannot leave an outcome behind for the other."""
    async def run() -> str:
        staff = await WsClient.connect(small.ws_url, small.token(Role.STAFF, "dave"))
        shopper = await WsClient.connect(small.ws_url, small.token(Role.SHOPPER, "shp_http"))
        try:
            await staff.ok("presence.set", status="online")
            opened = await shopper.ok("conversation.open", store="lyon", skill="guitars",
                                      language="en")
            cid = opened["conversation"]["conversation_id"]
            await staff.expect("conversation.offered", conversation__conversation_id=cid)
            await staff.ok("conversation.accept", conversation_id=cid)
            await staff.ok("conversation.close", conversation_id=cid)
            return cid
        finally:
            await staff.close()
            await shopper.close()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return {group: pool.submit(asyncio.run, run()).result(timeout=30)
                for group in ("plain", "hostile")}


@pytest.mark.parametrize("case", list(HTTP_CASES) + list(HTTP_HOSTILE_CASES))
async def test_bad_outcome_body_is_refused_and_stores_nothing(
        small: ServerProcess, served_cids: dict[str, str], case: str) -> None:
    hostile = case in HTTP_HOSTILE_CASES
    body, status, code, fields = (HTTP_HOSTILE_CASES if hostile else HTTP_CASES)[case]
    served_cid = served_cids["hostile" if hostile else "plain"]
    url = f"{small.base_url}/api/conversations/{served_cid}/outcome"
    ops = small.token(Role.OPERATOR, "ops")
    got_status, reply = await http("POST", url, ops, data=body)
    assert got_status == status, (got_status, reply)
    assert isinstance(reply, dict) and set(reply) == {"error"}, reply
    assert reply["error"]["code"] == code, reply
    if fields:
        assert fields <= {d["field"] for d in reply["error"]["details"]}, reply
    # Nothing was recorded, and the endpoint still works for a good body.
    _, record = await http("GET", f"{small.base_url}/api/conversations/{served_cid}", ops)
    assert record["outcome"] is None or record["outcome"]["order_value"] == 42.0
    status, reply = await http("POST", url, ops, {"order_placed": True, "order_value": 42.0,
                                                  "currency": "EUR"})
    assert status == 200 and reply["order_value"] == 42.0
    # Every response, including the stored record, is standard JSON (no NaN/Infinity).
    async with aiohttp.ClientSession() as session, session.get(
            f"{small.base_url}/api/conversations/{served_cid}",
            headers={"Authorization": f"Bearer {ops}"}) as resp:
        text = await resp.text()
    json.loads(text, parse_constant=_refuse_constant)
    assert small.alive


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {name} in a response")


@pytest.mark.parametrize(("method", "path", "body", "code"), [
    ("PUT", "/api/stores/lyon", b"{oops", "invalid_json"),
    ("PUT", "/api/stores/lyon", b'{"name": 7}', "invalid_message"),
    ("PUT", "/api/stores/bad%20id", b'{"name": "Bad"}', "invalid_message"),
    ("PUT", "/api/staff/alice", b'{"name": "Alice", "store": "atlantis"}', "invalid_message"),
    ("PUT", "/api/staff/alice", b'{"name": "Alice", "store": "lyon", "max_conversations": 0}',
     "invalid_message"),
    ("GET", "/api/conversations?limit=abc", None, "invalid_message"),
    ("GET", "/api/conversations?limit=0", None, "invalid_message"),
    ("GET", "/api/conversations?state=exploded", None, "invalid_message"),
    ("GET", "/api/availability?store=" + "x" * 65, None, "invalid_message"),
])
async def test_other_bad_http_input_is_400(small: ServerProcess, method: str, path: str,
                                           body: bytes | None, code: str) -> None:
    ops = small.token(Role.OPERATOR, "ops")
    status, reply = await http(method, small.base_url + path, ops, data=body)
    assert status == 400, (status, reply)
    assert set(reply) == {"error"} and reply["error"]["code"] == code, reply
    # The stores and staff were left as they were.
    _, stores = await http("GET", small.base_url + "/api/stores", ops)
    assert {s["id"]: s["name"] for s in stores["stores"]} == {
        "lyon": "Harmonie Lyon", "paris": "Harmonie Paris"}
    _, staff = await http("GET", small.base_url + "/api/staff", ops)
    alice = next(s for s in staff["staff"] if s["id"] == "alice")
    assert alice["store"] == "lyon" and alice["max_conversations"] == 2


async def test_server_survived_everything(small: ServerProcess, connect) -> None:
    await still_serving(small, connect)
    status, body = await http("GET", small.base_url + "/readyz")
    assert status == 200 and body["status"] == "ready"
