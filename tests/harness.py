"""Real-server test harness: the server runs as its own process on a loopback port chosen by
the OS, and clients talk to it over real WebSockets and HTTP, as shops' browsers do."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from signaling.auth import TokenIssuer
from signaling.model import Role

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ROOT = Path(__file__).resolve().parent.parent

# A small shop: two stores, staff with different skills, languages and capacities.
BASE_CONFIG = """
[server]
host = "{host}"
shutdown_grace_s = {shutdown_grace_s}
{server_extra}

[http]
allowed_origins = {allowed_origins}
trusted_proxies = {trusted_proxies}

[media]
backend = "{media_backend}"
announced_addresses = {announced}

[routing]
offer_timeout_s = {offer_timeout_s}
missed_after_s = {missed_after_s}
heartbeat_interval_s = 0.2
heartbeat_timeout_s = {heartbeat_timeout_s}
staff_reconnect_grace_s = {grace_s}
default_handle_time_s = 120

[limits]
max_message_bytes = {max_message_bytes}
messages_per_second = {messages_per_second}
message_burst = {message_burst}

[[stores]]
id = "lyon"
name = "Harmonie Lyon"

[[stores]]
id = "paris"
name = "Harmonie Paris"
overflow = {paris_overflow}

[[staff]]
id = "alice"
name = "Alice"
store = "lyon"
skills = ["guitars", "recording"]
languages = ["en", "fr"]
max_conversations = 2

[[staff]]
id = "bob"
name = "Bob"
store = "lyon"
skills = ["pianos"]
languages = ["fr"]
max_conversations = 1
channels = ["chat", "audio"]

[[staff]]
id = "carol"
name = "Carol"
store = "paris"
skills = ["guitars"]
languages = ["en"]
max_conversations = 1

[[staff]]
id = "dave"
name = "Dave"
store = "lyon"
skills = ["guitars"]
languages = ["en"]
max_conversations = 1

[[qualification]]
id = "what"
text = "What are you looking for?"
options = [
  {{ id = "gtr", label = "A guitar", skill = "guitars" }},
  {{ id = "pno", label = "A piano", skill = "pianos" }},
]

{extra_config}
"""

DEFAULTS = {"offer_timeout_s": 3.0, "missed_after_s": 30.0, "heartbeat_timeout_s": 30.0,
            "grace_s": 1.0, "max_message_bytes": 4096, "messages_per_second": 50,
            "message_burst": 100, "paris_overflow": "true",
            "media_backend": "sfu", "shutdown_grace_s": 1.0, "allowed_origins": "[]",
            "host": "127.0.0.1", "announced": '["127.0.0.1"]', "trusted_proxies": "[]",
            "extra_config": "", "server_extra": ""}


class ServerProcess:
    """`shopcall serve` in a child process; start/kill/restart on the same database."""

    def __init__(self, workdir: Path, **overrides: Any) -> None:
        self.workdir = workdir
        self.db = workdir / "shopcall.db"
        self.config = workdir / "shopcall.toml"
        self.config.write_text(BASE_CONFIG.format(**{**DEFAULTS, **overrides}))
        self.issuer = TokenIssuer(SECRET)
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.metrics_url = ""  # with a separate [metrics] address
        self.banner: list[str] = []
        self.log = workdir / "server.log"

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "SHOPCALL_AUTH__SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        self._stderr = self.log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "signaling", "serve", "--port", "0", "--db", str(self.db),
             "--config", str(self.config)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        self.banner = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.banner.append(line.rstrip())
            match = re.search(r"listening on (https?://\S+)", line)
            if match:  # listening on every address: reach it on loopback
                self.base_url = match.group(1).replace("://0.0.0.0:", "://127.0.0.1:")
            match = re.search(r"metrics: +(http://\S+)", line)
            if match:
                self.metrics_url = match.group(1)
            if "dashboard:" in line:  # the banner's last line
                return
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    @property
    def ws_url(self) -> str:
        return re.sub(r"^http", "ws", self.base_url) + "/ws"

    def token(self, role: Role, subject: str, ttl_s: float = 3600) -> str:
        return self.issuer.mint(role, subject, ttl_s)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush; what was acknowledged must survive."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self._close_pipes()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
        self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@contextmanager
def seeded_server(workdir: Path, seed: Callable[[ServerProcess], Awaitable[dict[str, Any]]],
                  **overrides: Any) -> Iterator[tuple[ServerProcess, dict[str, Any]]]:
    """A server shared by a whole test module, seeded once through the real API.

    The seeding runs on its own event loop in its own thread, so the per-test loops of
    pytest-asyncio never see a module-scoped loop.
    """
    server = ServerProcess(workdir, **overrides)
    server.start()
    try:
        with ThreadPoolExecutor(1) as pool:
            data = pool.submit(asyncio.run, seed(server)).result(timeout=60)
        yield server, data
    finally:
        server.stop()


class WsClient:
    """A signalling client that keeps every pushed event for later assertions."""

    _ids = itertools.count(1)

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._new_event = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())
        self._pinger: asyncio.Task[None] | None = None
        self.welcome: dict[str, Any] = {}

    def keep_alive(self, interval_s: float = 0.2) -> None:
        """Ping like a real staff console does, so heartbeat expiry does not cut us off."""
        async def loop() -> None:
            while not self.closed.is_set():
                await self.ws.send_str('{"type":"ping"}')
                await asyncio.sleep(interval_s)
        self._pinger = asyncio.create_task(loop())

    @classmethod
    async def connect(cls, url: str, token: str | None = None) -> WsClient:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=0)
        client = cls(session, ws)
        if token is not None:
            reply = await client.send("hello", token=token)
            assert reply["type"] == "welcome", reply
            client.welcome = reply
        return client

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                fut = self.replies.pop(msg.get("id") or "", None)
                if fut is not None and msg["type"] in ("ack", "error", "welcome", "pong"):
                    fut.set_result(msg)
                    continue
                self.events.append(msg)
                self._new_event.set()
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            for fut in self.replies.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))

    async def send(self, type_: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a request and return its reply (ack, error, welcome or pong)."""
        request_id = f"r{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self.replies[request_id] = fut
        await self.ws.send_str(json.dumps({"type": type_, "id": request_id, **fields}))
        return await asyncio.wait_for(fut, timeout)

    async def ok(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a request that must succeed; return its result."""
        reply = await self.send(type_, **fields)
        assert reply["type"] in ("ack", "welcome", "pong"), reply
        return reply.get("result", reply)

    async def fail(self, type_: str, code: str, **fields: Any) -> dict[str, Any]:
        reply = await self.send(type_, **fields)
        assert reply["type"] == "error" and reply["code"] == code, reply
        return reply

    async def raw(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def expect(self, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Wait for (and consume) the first pushed event of this type matching the fields."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("type") == type_ and _matches(event, match):
                    del self.events[i]
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {type_} {match} event; got {self.events}")
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), remaining)
            except TimeoutError:
                pass

    def drop(self, type_: str) -> None:
        self.events = [e for e in self.events if e.get("type") != type_]

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        await self.ws.close()
        await self._reader
        await self.session.close()


def _matches(event: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    for key, want in match.items():
        value: Any = event
        for part in key.split("__"):
            if not isinstance(value, Mapping) or part not in value:
                return False
            value = value[part]
        if value != want:
            return False
    return True


async def http(method: str, url: str, token: str | None = None, json_body: Any = None,
               data: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.request(
            method, url, headers=headers, json=json_body, data=data) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def scrape(server: ServerProcess) -> str:
    """/metrics as Prometheus scrapes it: with an operator token."""
    status, text = await http("GET", server.base_url + "/metrics",
                              server.token(Role.OPERATOR, "prometheus"))
    assert status == 200, text
    return text
