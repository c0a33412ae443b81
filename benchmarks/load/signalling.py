"""A signalling WebSocket client for simulated shoppers and staff: request/reply matching
by id with each round trip timed, and pushed events kept for the scenario to wait on.

Events nobody waits for (queue snapshots, typing, presence) are counted and dropped so a
long run does not pile them up. Server-pushed ``media.offer`` events go to a handler the
scenario registers, since a peer must answer them whenever they come.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .stats import LogHistogram

KEPT_EVENTS = {"conversation.offered", "conversation.accepted", "conversation.closed",
               "conversation.missed", "conversation.requeued", "conversation.offer_withdrawn",
               "chat.message", "call.proposed", "call.started", "call.ended",
               "call.declined", "call.invited", "feedback.requested", "media.notice"}


class RequestFailed(Exception):
    """An error reply, a timeout or a lost connection: ``cause`` is what the report groups
    failures by, e.g. ``call.accept: media_unavailable`` or ``conversation.open: timeout``."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause} {detail}".strip())
        self.cause = cause
        self.detail = detail


class SignalClient:
    _ids = itertools.count(1)

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 rtt: LogHistogram) -> None:
        self.session = session
        self.ws = ws
        self.rtt = rtt
        self.events: list[dict[str, Any]] = []
        self.dropped_events = 0
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.on_media_offer: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self._new_event = asyncio.Event()
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader = asyncio.ensure_future(self._read())
        self._pinger: asyncio.Task[None] | None = None
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, token: str,
                      rtt: LogHistogram, wait_s: float = 10.0) -> SignalClient:
        try:
            ws = await session.ws_connect(url, max_msg_size=0, heartbeat=None,
                                          timeout=aiohttp.ClientWSTimeout(ws_close=wait_s))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RequestFailed("connect", repr(e)) from None
        client = cls(session, ws, rtt)
        reply = await client.request("hello", wait_s=wait_s, token=token)
        client.welcome = reply
        interval = float(reply.get("heartbeat_interval_s") or 5.0)
        client._pinger = asyncio.ensure_future(client._ping(interval))
        return client

    async def _ping(self, interval: float) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(interval)
            try:
                await self.ws.send_str('{"type":"ping"}')
            except (ConnectionError, RuntimeError):
                return

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                kind = msg.get("type")
                fut = self.replies.pop(msg.get("id") or "", None)
                if fut is not None and kind in ("ack", "error", "welcome", "pong"):
                    if not fut.done():
                        fut.set_result(msg)
                    continue
                if kind == "media.offer" and self.on_media_offer is not None:
                    task = asyncio.ensure_future(self.on_media_offer(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    continue
                if self.on_event is not None:
                    self.on_event(msg)
                if kind in KEPT_EVENTS:
                    self.events.append(msg)
                    self._new_event.set()
                else:
                    self.dropped_events += 1
        except Exception:  # a broken connection ends the reader like a close does
            pass
        finally:
            self.closed.set()
            self._new_event.set()
            for fut in self.replies.values():
                if not fut.done():
                    fut.set_exception(RequestFailed("connection_closed",
                                                    f"code {self.ws.close_code}"))

    async def request(self, type_: str, wait_s: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a request; return its ack result (or the welcome/pong); raise RequestFailed
        on an error reply or no reply in time."""
        request_id = f"b{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = fut
        started = time.monotonic()
        try:
            await self.ws.send_str(json.dumps({"type": type_, "id": request_id, **fields}))
            reply = await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            self.replies.pop(request_id, None)
            raise RequestFailed(f"{type_}: timeout") from None
        except RequestFailed as e:
            raise RequestFailed(f"{type_}: {e.cause}", e.detail) from None
        except (ConnectionError, RuntimeError) as e:
            raise RequestFailed(f"{type_}: connection_closed", repr(e)) from None
        self.rtt.add(time.monotonic() - started)
        if reply.get("type") == "error":
            raise RequestFailed(f"{type_}: {reply.get('code')}", str(reply.get("message")))
        result = reply.get("result", reply)
        return result if isinstance(result, dict) else {}

    async def expect(self, type_: str, wait_s: float, **match: Any) -> dict[str, Any]:
        """Wait for (and consume) the first pushed event of this type whose top-level or
        nested (a__b) fields match."""
        deadline = time.monotonic() + wait_s
        while True:
            for i, event in enumerate(self.events):
                if event.get("type") == type_ and _matches(event, match):
                    del self.events[i]
                    return event
            if self.closed.is_set():
                raise RequestFailed(f"wait {type_}: connection_closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestFailed(f"wait {type_}: timeout")
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), remaining)
            except TimeoutError:
                pass

    def forget(self, conversation_id: str) -> None:
        """Drop leftover events of a finished conversation."""
        self.events = [e for e in self.events if conversation_id not in json.dumps(e)]

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        for task in list(self._tasks):
            task.cancel()
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        self._reader.cancel()


def _matches(event: dict[str, Any], match: dict[str, Any]) -> bool:
    for key, want in match.items():
        value: Any = event
        for part in key.split("__"):
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        if value != want:
            return False
    return True
