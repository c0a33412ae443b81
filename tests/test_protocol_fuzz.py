"""A seeded fuzz of the WebSocket protocol against a real server: a few thousand frames, from
well-formed requests of every type (generated from the protocol's own JSON schemas, with real
conversation and call ids mixed in so they reach deep into the switchboard) to mangled ones
(wrong types, missing and unknown fields, huge and odd values, not JSON at all), sent by a
shopper, two staff members and an operator, each on its own connection.

Every frame must get exactly one reply, an `ack` or an `error` with a stable code, never
`internal_error`; no connection may be dropped; and every chat message the server
acknowledged during the run must be in the conversation's record afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.model import Role
from signaling.protocol import INBOUND, ErrorCode

from .harness import ServerProcess, WsClient, http
from .json_strategies import from_schema

pytestmark = pytest.mark.integration

STABLE_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL_ERROR.value}
ROLES = ("shopper", "alice", "dave", "operator")
EXAMPLES = 1500  # per test below: two tests, 3,000 frames


class Driver:
    """Connections to one server, driven from hypothesis's synchronous tests through an
    event loop in its own thread (the test's own loop stays free)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: dict[str, WsClient] = {}
        self.ids: dict[str, list[str]] = {"conversation_id": [], "call_id": [],
                                          "staff_id": ["alice", "dave", "bob", "carol"]}
        self.acked_chat: list[tuple[str, int, str | None]] = []  # (conversation, seq, text)
        self.replies = 0
        self.outcomes: dict[str, int] = {}  # "ack" or the error code -> how many
        self.run(self._setup())

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def replenish(self) -> None:
        """Fuzzed requests close conversations and end calls: open fresh ones now and then
        (best effort: Alice may be full), so later requests still reach live state."""
        shopper, alice = self.clients["shopper"], self.clients["alice"]
        reply = await shopper.send("conversation.open", store="lyon", skill="guitars",
                                   language="en")
        if reply["type"] != "ack":
            return
        cid = reply["result"]["conversation"]["conversation_id"]
        self.ids["conversation_id"].append(cid)
        await alice.send("presence.set", status="online")
        await alice.send("conversation.accept", conversation_id=cid)
        call = await shopper.send("call.propose", conversation_id=cid, kind="audio")
        if call["type"] == "ack":
            self.ids["call_id"].append(call["result"]["call"]["call_id"])
            await alice.send("call.accept", call_id=call["result"]["call"]["call_id"])

    async def _setup(self) -> None:
        s = self.server
        status, body = await http("POST", s.base_url + "/api/shopper-token")
        assert status == 200
        self.clients["shopper"] = await WsClient.connect(s.ws_url, body["token"])
        for name in ("alice", "dave"):
            client = await WsClient.connect(s.ws_url, s.token(Role.STAFF, name))
            client.keep_alive()
            await client.ok("presence.set", status="online")
            self.clients[name] = client
        self.clients["operator"] = await WsClient.connect(s.ws_url,
                                                          s.token(Role.OPERATOR, "ops"))
        shopper, alice = self.clients["shopper"], self.clients["alice"]
        for _ in range(2):  # two conversations Alice accepts, one with a running call
            cid = (await shopper.ok("conversation.open", store="lyon", skill="guitars",
                                    language="en"))["conversation"]["conversation_id"]
            await alice.expect("conversation.offered", conversation__conversation_id=cid)
            await alice.ok("conversation.accept", conversation_id=cid)
            self.ids["conversation_id"].append(cid)
        call = await shopper.ok("call.propose", conversation_id=cid, kind="video")
        self.ids["call_id"].append(call["call"]["call_id"])
        await alice.ok("call.accept", call_id=call["call"]["call_id"])

    def send(self, role: str, frame: str) -> dict[str, Any]:
        return self.run(self._send(role, frame))

    async def _send(self, role: str, frame: str) -> dict[str, Any]:
        client = self.clients[role]
        assert not client.closed.is_set(), f"{role}'s connection was dropped"
        client.events.clear()  # pushed events do not matter here; replies come in order
        # Each reply carries the frame's id when one could be read, else id null: read the
        # reply stream in order (the server answers one frame at a time).
        fut = self.loop.create_future()
        client.replies["__fuzz__"] = fut
        try:
            data = json.loads(frame)
            request_id = data.get("id") if isinstance(data, dict) else None
        except (ValueError, RecursionError):
            request_id = None
        if isinstance(request_id, str) and request_id:
            client.replies[request_id] = fut
        await client.raw(frame)
        try:
            reply = await asyncio.wait_for(self._reply(client, fut), 10)
        finally:
            client.replies.pop("__fuzz__", None)
            if isinstance(request_id, str):
                client.replies.pop(request_id, None)
        self.replies += 1
        return reply

    @staticmethod
    async def _reply(client: WsClient, fut: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        while not fut.done():
            # Replies without a readable id land in the event list as `error` events.
            for i, event in enumerate(client.events):
                if event.get("type") in ("error", "ack") and event.get("id") is None:
                    del client.events[i]
                    return event
            await asyncio.sleep(0.001)
        return fut.result()

    def close(self) -> None:
        async def shut() -> None:
            for client in self.clients.values():
                await client.close()
        self.run(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    workdir: Path = tmp_path_factory.mktemp("protocol-fuzz")
    server = ServerProcess(workdir, max_message_bytes=8192, messages_per_second=5000,
                           message_burst=5000, heartbeat_timeout_s=300.0, media_backend="none")
    server.start()
    d = Driver(server)
    try:
        yield d
    finally:
        d.close()
        alive = server.alive
        log = server.log.read_text()
        server.stop()
        assert alive, log[-3000:]
        assert "Traceback" not in log, log[-6000:]


# Strategies -----------------------------------------------------------------------------------

def _schema(model: Any) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["properties"]["id"] = {"type": "string", "minLength": 1, "maxLength": 64}
    schema.setdefault("required", []).append("id")
    return schema


VALID = {name: from_schema(_schema(model)) for name, model in INBOUND.items()
         if name != "hello"}
ID_FIELDS = ("conversation_id", "call_id", "staff_id")


@st.composite
def well_formed(draw: st.DrawFn, pool: dict[str, list[str]]) -> dict[str, Any]:
    # Chat messages weigh more: they are the data the run checks is never lost.
    kind = draw(st.sampled_from([*sorted(VALID), *["chat.send"] * 6]))
    message = dict(draw(VALID[kind]))
    if kind == "chat.send" and draw(st.integers(0, 3)):  # mostly one of text or card, as asked
        if message.get("text") is not None:
            message.pop("card", None)
        elif message.get("card") is None:
            message["text"] = draw(st.text(min_size=1, max_size=200))
    for field in ID_FIELDS:  # real ids most of the time, so the request gets somewhere
        # An index, not sampled_from(pool): the pool grows during the run, and a draw must
        # have the same shape each time Hypothesis replays it.
        pick = draw(st.integers(0, 1 << 16))
        if field in message and pool[field] and pick % 4:
            message[field] = pool[field][-1 - pick % min(len(pool[field]), 8)]
    message["id"] = draw(st.uuids()).hex
    if draw(st.integers(0, 9)):  # the protocol version clients really send
        message["v"] = 1
    return message


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)


@st.composite
def mangled(draw: st.DrawFn, pool: dict[str, list[str]]) -> str:
    """A request broken in one of the ways clients and attackers break them."""
    message = draw(well_formed(pool))
    how = draw(st.sampled_from(["drop", "retype", "extra", "huge", "envelope", "raw"]))
    fields = [k for k in message if k != "id"]
    if how == "drop" and fields:
        message.pop(draw(st.sampled_from(fields)))
    elif how == "retype" and fields:
        message[draw(st.sampled_from(fields))] = draw(JUNK)
    elif how == "extra":
        message[draw(st.text(min_size=1, max_size=12))] = draw(JUNK)
    elif how == "huge" and fields:
        message[draw(st.sampled_from(fields))] = draw(st.sampled_from(
            ["x" * 7000, 10**300, -1, 2**64, "\u0000\ud7ff\ufffd" * 50, [[[[[]]]]] * 200]))
    elif how == "envelope":
        message["v"] = draw(JUNK)
        message["type"] = draw(st.sampled_from([*INBOUND, "", "chat.sendx", None, 7]))
    if how == "raw":
        return draw(st.sampled_from([
            "", "{", "[]", "null", "42", '"hello"', '{"type": "ping"', "\u0000" * 10,
            '{"type":"chat.send","id":"a","id":"b"}', "[" * 5000 + "]" * 5000,
            '{"id": "x", "type": "chat.send", "conversation_id": {"$ne": 1}}',
        ]))
    return json.dumps(message)


def check(driver: Driver, role: str, frame: str) -> None:
    if driver.replies % 100 == 99:
        driver.run(driver.replenish())
    reply = driver.send(role, frame)
    assert reply["type"] in ("ack", "error", "pong"), reply
    outcome = reply.get("code", reply["type"])
    driver.outcomes[outcome] = driver.outcomes.get(outcome, 0) + 1
    if reply["type"] == "error":
        assert reply["code"] in STABLE_CODES, (frame[:300], reply)
    else:
        try:
            sent = json.loads(frame)
        except (ValueError, RecursionError):
            sent = None
        if isinstance(sent, dict) and sent.get("type") == "chat.send":
            # What the server says it stored (a resend with a used id acks the original).
            stored = reply["result"]["message"]
            driver.acked_chat.append((stored["conversation_id"], stored["seq"],
                                      stored["text"]))


FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))


CLIENTS_OF = {Role.SHOPPER: ["shopper"], Role.STAFF: ["alice", "dave"],
              Role.OPERATOR: ["operator"]}


@FUZZ
@given(data=st.data())
def test_well_formed_requests_of_every_type(driver: Driver, data: st.DataObject) -> None:
    message = data.draw(well_formed(driver.ids))
    allowed = [c for role in INBOUND[message["type"]].roles for c in CLIENTS_OF[role]]
    # Mostly sent by someone allowed to, so the request gets past the role check.
    role = data.draw(st.sampled_from(sorted(allowed) if data.draw(st.integers(0, 9))
                                     else ROLES))
    check(driver, role, json.dumps(message))


@FUZZ
@given(data=st.data())
def test_mangled_frames(driver: Driver, data: st.DataObject) -> None:
    role = data.draw(st.sampled_from(ROLES))
    check(driver, role, data.draw(mangled(driver.ids)))


def test_nothing_acknowledged_was_lost(driver: Driver) -> None:
    """Runs after the fuzz (same module): every acknowledged chat message is on record."""
    assert driver.replies >= 2 * EXAMPLES
    print(sorted(driver.outcomes.items(), key=lambda kv: -kv[1]))
    # The well-formed half really got through to the switchboard, not only to validation.
    assert driver.outcomes.get("ack", 0) >= 50, driver.outcomes
    assert len(driver.acked_chat) >= 10, driver.outcomes
    ops = driver.server.token(Role.OPERATOR, "ops")

    async def stored(cid: str) -> dict[int, str | None]:
        status, record = await http("GET", f"{driver.server.base_url}/api/conversations/{cid}",
                                    ops)
        assert status == 200, record
        return {m["seq"]: m["text"] for m in record["messages"]}

    for cid in {c for c, _, _ in driver.acked_chat}:
        messages = driver.run(stored(cid))
        for c, seq, text in driver.acked_chat:
            if c == cid:
                assert messages.get(seq) == text, (cid, seq, text)
