"""The server as the web sees it: which origins may embed the widget and open WebSockets,
the security headers of every page, /metrics behind a token, database files only the server
can read, and a client that stops reading dropped at once. Real server process, real HTTP and
WebSockets; the browser side of embedding is in test_browser_embed.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from signaling.model import Role

from .conftest import accepted_conversation
from .harness import ServerProcess, WsClient, scrape

pytestmark = pytest.mark.integration

SHOP = "http://127.0.0.2:18081"
ALLOWED = json.dumps([SHOP, "https://*.shop.example"])


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(allowed_origins=ALLOWED)


async def request(method: str, url: str, headers: dict[str, str] | None = None,
                  body: Any = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.request(
            method, url, headers=headers or {}, json=body) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def own(server: ServerProcess) -> str:
    return server.base_url


# CORS ---------------------------------------------------------------------------------------

async def test_the_widget_and_its_endpoints_answer_an_allowed_shop_site(server):
    for path in ("/static/widget.js", "/static/protocol.js", "/static/widget.css",
                 "/api/availability?store=lyon", "/api/qualification"):
        status, headers, _ = await request("GET", server.base_url + path, {"Origin": SHOP})
        assert status == 200, path
        assert headers.get("Access-Control-Allow-Origin") == SHOP, (path, headers)
        assert "Origin" in headers.get("Vary", ""), (path, headers)
    # A JSON POST is preflighted; the preflight names what the route takes.
    status, headers, _ = await request("OPTIONS", server.base_url + "/api/shopper-token", {
        "Origin": SHOP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204, headers
    assert headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, body = await request("POST", server.base_url + "/api/shopper-token",
                                          {"Origin": SHOP}, {})
    assert status == 200 and json.loads(body)["token"], body
    assert headers["Access-Control-Allow-Origin"] == SHOP
    # Every subdomain of a wildcard entry, and only those.
    for origin, allowed in (("https://www.shop.example", True),
                            ("https://fr.shop.example", True),
                            ("https://shop.example.attacker.test", False),
                            ("https://evilshop.example", False),
                            ("http://www.shop.example", False)):
        status, headers, _ = await request("GET", server.base_url + "/static/widget.js",
                                           {"Origin": origin})
        assert (status == 200) is allowed, origin
        assert (headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin


async def test_other_sites_get_nothing(server):
    evil = "http://127.0.0.3:18081"
    for method, path in (("GET", "/static/widget.js"), ("GET", "/api/availability"),
                         ("POST", "/api/shopper-token")):
        status, headers, body = await request(method, server.base_url + path,
                                              {"Origin": evil}, {} if method == "POST" else None)
        assert status == 403, (path, status)
        assert "Access-Control-Allow-Origin" not in headers
        assert json.loads(body)["error"]["code"] == "forbidden"
    status, headers, _ = await request("OPTIONS", server.base_url + "/api/shopper-token", {
        "Origin": evil, "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


async def test_staff_and_operator_endpoints_stay_same_origin(server):
    ops = {"Authorization": f"Bearer {server.token(Role.OPERATOR, 'ops')}"}
    # Even an allowed shop site may not call the operator API from its pages.
    status, headers, _ = await request("GET", server.base_url + "/api/stores",
                                       {**ops, "Origin": SHOP})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = await request("OPTIONS", server.base_url + "/api/stores", {
        "Origin": SHOP, "Access-Control-Request-Method": "GET"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # shopcall's own pages (same origin), and tools that send no Origin, may.
    for extra in ({"Origin": own(server)}, {}):
        status, headers, _ = await request("GET", server.base_url + "/api/stores",
                                           {**ops, **extra})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers


# WebSocket origins --------------------------------------------------------------------------

async def ws_connect(server: ServerProcess, origin: str | None) -> aiohttp.ClientWebSocketResponse:
    session = aiohttp.ClientSession()
    try:
        return await session.ws_connect(server.ws_url,
                                         headers={"Origin": origin} if origin else {})
    except BaseException:
        await session.close()
        raise


async def hello(ws: aiohttp.ClientWebSocketResponse, token: str) -> dict[str, Any]:
    await ws.send_json({"type": "hello", "id": "h1", "v": 1, "token": token})
    return await ws.receive_json(timeout=5)


async def test_websocket_checks_the_origin(server):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await ws_connect(server, "http://127.0.0.3:18081")
    assert refused.value.status == 403

    async with aiohttp.ClientSession() as session:
        # A shop site may connect shoppers.
        async with session.ws_connect(server.ws_url, headers={"Origin": SHOP}) as ws:
            _, _, body = await request("POST", server.base_url + "/api/shopper-token")
            welcome = await hello(ws, json.loads(body)["token"])
            assert welcome["type"] == "welcome" and welcome["role"] == "shopper"
        # Not staff: an error, then close 4403.
        async with session.ws_connect(server.ws_url, headers={"Origin": SHOP}) as ws:
            reply = await hello(ws, server.token(Role.STAFF, "alice"))
            assert reply["type"] == "error" and reply["code"] == "forbidden", reply
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 4403
        # Staff from shopcall's own console, and tools without an Origin.
        for origin in (own(server), None):
            async with session.ws_connect(server.ws_url,
                                          headers={"Origin": origin} if origin else {}) as ws:
                welcome = await hello(ws, server.token(Role.STAFF, "alice"))
                assert welcome["type"] == "welcome", welcome


# Headers ------------------------------------------------------------------------------------

def csp_directives(value: str) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
            for part in (p.strip() for p in value.split(";")) if part}


async def test_security_headers_on_every_page(server):
    for path in ("/", "/staff", "/dashboard", "/static/widget.js", "/api/availability",
                 "/api/openapi.json", "/healthz", "/no-such-page", "/static/nope.js"):
        status, headers, _ = await request("GET", server.base_url + path)
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert headers.get("Referrer-Policy") == "strict-origin-when-cross-origin", path
        if path in ("/", "/staff", "/dashboard"):
            assert status == 200
            csp = csp_directives(headers["Content-Security-Policy"])
            assert csp["frame-ancestors"] == "'none'", path
            assert headers["X-Frame-Options"] == "DENY", path
            for directive in ("script-src", "style-src", "default-src"):
                assert "unsafe" not in csp[directive], (path, csp)
            assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
        elif path.startswith("/static/"):
            if status == 200:  # loaded by shops' pages: never framed itself, so no CSP
                assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        else:
            csp = csp_directives(headers["Content-Security-Policy"])
            assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"


# /metrics -----------------------------------------------------------------------------------

async def test_metrics_need_an_operator_token(server):
    status, _, body = await request("GET", server.base_url + "/metrics")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthenticated"
    status, _, _ = await request("GET", server.base_url + "/metrics", {
        "Authorization": f"Bearer {server.token(Role.STAFF, 'alice')}"})
    assert status == 403
    text = await scrape(server)
    assert "shopcall_staff_online" in text


async def test_metrics_on_a_separate_address_need_no_token(server_factory):
    server = server_factory(extra_config='[metrics]\nhost = "127.0.0.1"\nport = 0\n')
    assert server.metrics_url, server.banner
    async with aiohttp.ClientSession() as session, session.get(server.metrics_url) as resp:
        assert resp.status == 200
        assert "shopcall_queue_length" in await resp.text()
        # Nothing else is served there.
        async with session.get(server.metrics_url.replace("/metrics", "/api/stores")) as other:
            assert other.status == 404
    status, _, _ = await request("GET", server.base_url + "/metrics")
    assert status == 401  # the public address still wants a token


# Files --------------------------------------------------------------------------------------

async def test_database_files_are_readable_by_the_server_only(server, connect):
    _alice, shopper, cid = await accepted_conversation(server, connect)
    await shopper.ok("chat.send", conversation_id=cid, text="my address is 3 rue de la Paix")
    files = [server.db, server.db.with_name(server.db.name + "-wal"),
             server.db.with_name(server.db.name + "-shm")]
    assert all(f.exists() for f in files), files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, (f, oct(f.stat().st_mode))


async def test_an_old_readable_database_is_tightened(server_factory, tmp_path):
    first = server_factory()
    first.stop()
    first.db.chmod(0o644)
    first.start()
    assert stat.S_IMODE(first.db.stat().st_mode) == 0o600


# A client that stops reading ----------------------------------------------------------------

class StalledClient:
    """A WebSocket client with a tiny receive buffer that says hello and never reads again."""

    def __init__(self, url: str, token: str) -> None:
        m = re.match(r"http://([^:/]+):(\d+)", url)
        assert m
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((m[1], int(m[2])))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {m[1]}:{m[2]}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head, head
        self.send_text(json.dumps({"type": "hello", "id": "h", "v": 1, "token": token}))

    def send_text(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        assert len(data) < 65536
        header = bytes((0x81, 0x80 | 126)) + len(data).to_bytes(2, "big") if len(data) > 125 \
            else bytes((0x81, 0x80 | len(data)))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        self.sock.close()


async def staff_connections(server: ServerProcess) -> float:
    text = await scrape(server)
    m = re.search(r'shopcall_websocket_connections\{role="staff"\} (\S+)', text)
    return float(m[1]) if m else 0.0


async def test_a_client_that_stops_reading_is_dropped_at_once(
        server_factory: Callable[..., ServerProcess],
        connect: Callable[..., Awaitable[WsClient]]) -> None:
    server = server_factory(messages_per_second=2000, message_burst=2000,
                            max_message_bytes=65536, heartbeat_timeout_s=120.0)
    alice, shopper, cid = await accepted_conversation(server, connect)
    stalled = StalledClient(server.base_url, server.token(Role.STAFF, "alice"))
    try:
        for _ in range(50):
            if await staff_connections(server) == 2:
                break
            await asyncio.sleep(0.1)
        assert await staff_connections(server) == 2
        # Both of Alice's devices get every message; one of them never reads.
        started = time.monotonic()
        text = "x" * 3900
        dropped_after = None
        for i in range(3000):
            await shopper.ok("chat.send", conversation_id=cid, text=f"{i} {text}")
            if i % 50 == 0 and await staff_connections(server) == 1:
                dropped_after = time.monotonic() - started
                break
        assert dropped_after is not None, "the stalled client was never dropped"
        # Well before any heartbeat timeout (120 s here): at once, not after ~30 s of TCP
        # retries behind a close frame that cannot be sent.
        assert dropped_after < 20, dropped_after
        # The reading device still gets everything, in order.
        await shopper.ok("chat.send", conversation_id=cid, text="still there?")
        await alice.expect("chat.message", message__text="still there?", timeout=10)
        assert "does not read its messages" in server.log.read_text()
    finally:
        stalled.close()
