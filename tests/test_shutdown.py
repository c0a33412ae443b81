"""Restarts as operators do them: SIGTERM during business hours, and a process killed hard.

SIGTERM: every client hears `server.shutdown`; people in no call are let go at once (1001)
so they reconnect elsewhere; a running call keeps its people until it ends or the grace
period does, then ends as `interrupted`; meanwhile the node takes no new work (/readyz 503,
new WebSockets 503, new conversations refused). A call a killed process left open is closed
as `interrupted` at its last sign of life when the server starts again.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from signaling.model import Role

from .conftest import accepted_conversation, new_shopper
from .harness import ServerProcess, WsClient, http

pytestmark = pytest.mark.integration


async def start_call(alice: WsClient, shopper: WsClient, cid: str) -> str:
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    await alice.expect("call.proposed")
    await alice.ok("call.accept", call_id=call_id)
    await shopper.expect("call.started")
    return call_id


def terminate(server: ServerProcess) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)


async def exited(server: ServerProcess, timeout_s: float) -> float:
    started = time.monotonic()
    assert server.proc is not None
    while server.proc.poll() is None:
        assert time.monotonic() - started < timeout_s, "the server did not exit"
        await asyncio.sleep(0.05)
    assert server.proc.returncode == 0, server.log.read_text()[-3000:]
    return time.monotonic() - started


async def call_record(server: ServerProcess, cid: str) -> tuple[dict, list[dict]]:
    status, record = await http("GET", f"{server.base_url}/api/conversations/{cid}",
                                server.token(Role.OPERATOR, "ops"))
    assert status == 200, record
    [call] = record["calls"]
    ends = [e for e in record["events"] if e["kind"] == "call_ended"]
    return call, ends


async def test_sigterm_lets_idle_clients_go_and_running_calls_finish(
        server_factory: Callable[..., ServerProcess],
        connect: Callable[..., Awaitable[WsClient]]) -> None:
    server = server_factory(shutdown_grace_s=30.0)
    alice, shopper, cid = await accepted_conversation(server, connect)
    alice.keep_alive()
    call_id = await start_call(alice, shopper, cid)
    dave = await connect(server, Role.STAFF, "dave")  # online, in no call
    dave.keep_alive()
    await dave.ok("presence.set", status="online")
    browsing = await connect(server, token=await new_shopper(server))  # just browsing

    terminate(server)
    for client in (alice, shopper, dave, browsing):
        notice = await client.expect("server.shutdown", timeout=5)
        assert notice["grace_s"] == 30.0 and notice["reason"] == "restart"
    # Those in no call are let go at once, with 1001 (reconnect elsewhere).
    for client in (dave, browsing):
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == 1001
    # The call goes on: its people stay connected; the node takes no new work.
    assert not alice.closed.is_set() and not shopper.closed.is_set()
    status, body = await http("GET", server.base_url + "/readyz")
    assert (status, body) == (503, {"status": "draining"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await WsClient.connect(server.ws_url)
    assert refused.value.status == 503
    await shopper.fail("conversation.open", "shutting_down", store="paris", skill="guitars")
    await shopper.ok("chat.send", conversation_id=cid, text="can you show the other one?")
    await alice.expect("chat.message")

    # They hang up: now they are let go too, and the process exits well before the grace.
    await shopper.ok("call.end", call_id=call_id)
    for client in (alice, shopper):
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == 1001
    assert await exited(server, 10) < 10

    server.start()
    call, ends = await call_record(server, cid)
    assert call["ended_at"] is not None
    assert [e["data"]["reason"] for e in ends] == ["hung_up"]


async def test_a_call_still_running_after_the_grace_period_ends_as_interrupted(
        server_factory: Callable[..., ServerProcess],
        connect: Callable[..., Awaitable[WsClient]]) -> None:
    server = server_factory(shutdown_grace_s=1.5)
    alice, shopper, cid = await accepted_conversation(server, connect)
    alice.keep_alive()
    await start_call(alice, shopper, cid)
    started = time.monotonic()
    terminate(server)
    ended = await alice.expect("call.ended", timeout=10)
    assert ended["reason"] == "interrupted"
    assert time.monotonic() - started >= 1.4  # the call had its grace period
    await asyncio.wait_for(alice.closed.wait(), 5)
    assert alice.close_code == 1001
    await exited(server, 10)

    server.start()
    call, ends = await call_record(server, cid)
    assert call["ended_at"] is not None and call["ended_at"] >= call["started_at"]
    assert [e["data"]["reason"] for e in ends] == ["interrupted"]


async def test_a_call_left_open_by_a_killed_process_is_closed_at_its_last_sign_of_life(
        server_factory: Callable[..., ServerProcess],
        connect: Callable[..., Awaitable[WsClient]]) -> None:
    server = server_factory()
    alice, shopper, cid = await accepted_conversation(server, connect)
    await start_call(alice, shopper, cid)
    await asyncio.sleep(0.3)
    last = (await shopper.ok("chat.send", conversation_id=cid,
                             text="the picture froze"))["message"]["at"]
    server.kill()
    await asyncio.sleep(1.5)  # the server is down for a while; that is not call time
    server.start()
    call, ends = await call_record(server, cid)
    assert call["ended_at"] == pytest.approx(last), (call, last)
    [end] = ends
    assert end["data"]["reason"] == "interrupted" and end["actor"] == "system"
    assert end["data"]["duration_s"] == pytest.approx(last - call["started_at"], abs=0.01)
    # Once only: a second restart finds nothing left open.
    server.stop()
    server.start()
    assert len((await call_record(server, cid))[1]) == 1
