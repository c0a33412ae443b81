"""The signalling WebSocket endpoint: framing, authentication, limits, dispatch.

Each connection handles its frames one at a time, in order (a chat message is acknowledged
before the next frame is read), and writes through a bounded queue drained by one writer
task, so a slow client can never block the switchboard or reorder its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, hdrs, web

from .auth import Principal, TokenError, TokenIssuer
from .metrics import SignalingMetrics
from .model import Role
from .protocol import (
    INBOUND,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    ack,
    error,
    parse_inbound,
)
from .rate_limit import TokenBucket
from .switchboard import Switchboard
from .web_security import OriginPolicy, origin_refused

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
MAX_OUTBOUND_QUEUE = 1000
# Refused frames are themselves metered: a client refused more than this many times in a
# burst (refilling at the message rate) is flooding, and is cut off.
MAX_RATE_STRIKES = 200
_ANONYMOUS = Principal(role=None, subject="", expires_at=0.0)  # type: ignore[arg-type]


class WsConnection:
    """A signalling connection: `send` never blocks, `close` never raises."""

    def __init__(self, ws: web.WebSocketResponse,
                 transport: asyncio.BaseTransport | None = None) -> None:
        self.conn_id = "ws_" + secrets.token_urlsafe(9)
        self.principal: Principal = _ANONYMOUS
        self._ws = ws
        self._transport = transport
        self._out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._closing = self._aborted = False
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.conn_id}")

    def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._out.qsize() >= MAX_OUTBOUND_QUEUE:
            log.warning("%s: client does not read its messages, closing", self.conn_id)
            self.abort()
            return
        self._out.put_nowait(message)

    def abort(self) -> None:
        """Drop a client that stopped reading, now: a close frame would wait behind the
        blocked writer (until TCP gives up, ~30 s) while its messages pile up in memory."""
        self._closing = self._aborted = True
        while not self._out.empty():
            self._out.get_nowait()
        self._writer.cancel()
        if self._transport is not None:
            self._transport.abort()  # the reader loop ends and the switchboard detaches

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        self._out.put_nowait(None)
        self._close_args = (code, reason)

    async def _write_loop(self) -> None:
        try:
            while (message := await self._out.get()) is not None:
                await self._ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionError, RuntimeError):
            pass  # the peer is gone; the reader side notices and cleans up
        except asyncio.CancelledError:
            return  # aborted: there is nobody to say goodbye to
        finally:
            if self._closing and not self._aborted:
                code, reason = self._close_args
                with contextlib.suppress(Exception):
                    await self._ws.close(code=code, message=reason.encode()[:120])

    async def aclose(self) -> None:
        self.close(1000, "")
        # asyncio.wait, not wait_for: it neither raises nor cancels when the writer was
        # aborted (cancelled) already.
        await asyncio.wait({self._writer}, timeout=2.0)
        if not self._writer.done():
            self._writer.cancel()


class SignalingEndpoint:
    def __init__(self, *, switchboard: Switchboard, issuer: TokenIssuer,
                 metrics: SignalingMetrics, origins: OriginPolicy, max_message_bytes: int,
                 messages_per_second: float, message_burst: float,
                 heartbeat_interval_s: float) -> None:
        self.switchboard = switchboard
        self.issuer = issuer
        self.metrics = metrics
        self.origins = origins
        self.max_message_bytes = max_message_bytes
        self.rate = messages_per_second
        self.burst = message_burst
        self.heartbeat_interval_s = heartbeat_interval_s

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Browsers send Origin with every WebSocket handshake (WebSockets are not subject to
        # CORS, so this check is the only thing that keeps other sites' pages out). Shops'
        # sites may open shopper connections; staff and operators only from our own pages,
        # which is checked at hello, once the role is known.
        if self.switchboard.draining:
            return web.json_response(
                {"error": {"code": ErrorCode.SHUTTING_DOWN.value,
                           "message": "this server is restarting: connect again shortly"}},
                status=503, headers={"Retry-After": "2"})
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and not self.origins.admits(origin, request, embeddable=True):
            self.metrics.protocol_errors.labels("origin_refused").inc()
            return origin_refused()
        # aiohttp's own limit is a backstop far above ours: frames between the two get a
        # `message_too_large` reply and the connection goes on.
        ws = web.WebSocketResponse(max_msg_size=max(1 << 20, 8 * self.max_message_bytes),
                                   heartbeat=max(5.0, 2 * self.heartbeat_interval_s))
        await ws.prepare(request)
        conn = WsConnection(ws, request.transport)
        bucket = TokenBucket(self.rate, self.burst)
        strikes = TokenBucket(self.rate, MAX_RATE_STRIKES)
        state = _ConnState()
        state.own_origin = origin is None or self.origins.is_own(origin, request)
        loop = asyncio.get_running_loop()
        hello_timer = loop.call_later(HELLO_TIMEOUT_S, self._hello_timeout, conn, state)
        try:
            async for frame in ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    now = time.monotonic()
                    if not bucket.allow(now):
                        if not strikes.allow(now):
                            conn.close(1008, "message flood")
                            break
                        self._reply_error(conn, ProtocolError(
                            ErrorCode.RATE_LIMITED,
                            f"more than {self.rate:g} messages per second"))
                        continue
                    await self._on_frame(conn, state, frame.data)
                elif frame.type is WSMsgType.ERROR:
                    break
        finally:
            hello_timer.cancel()
            if state.attached:
                await self.switchboard.detach(conn)
            await conn.aclose()
        return ws

    @staticmethod
    def _hello_timeout(conn: WsConnection, state: _ConnState) -> None:
        if not state.attached:
            conn.close(4401, "no hello received")

    async def _on_frame(self, conn: WsConnection, state: _ConnState, raw: str | bytes) -> None:
        started = time.perf_counter()
        label = "invalid"
        request_id: str | None = None
        try:
            msg = parse_inbound(raw, self.max_message_bytes)
            label, request_id = msg.type, msg.id
            if msg.type == "hello":
                await self._hello(conn, state, msg)  # type: ignore[arg-type]
                return
            if msg.type == "ping":
                conn.send({"type": "pong", "id": msg.id, "server_time": time.time()})
                if state.attached:
                    self.switchboard.touch(conn)
                return
            if not state.attached:
                raise ProtocolError(ErrorCode.UNAUTHENTICATED, "send hello with a token first")
            if conn.principal.expires_at <= time.time():
                conn.send(error(msg.id, ErrorCode.EXPIRED_TOKEN, "your token has expired"))
                conn.close(4401, "token expired")
                return
            if conn.principal.role not in INBOUND[msg.type].roles:
                raise ProtocolError(ErrorCode.FORBIDDEN,
                                    f"{conn.principal.role.value} may not send {msg.type}")
            self.switchboard.touch(conn)
            result = await self.switchboard.handle(conn, msg)
            conn.send(ack(msg.id, result))
        except ProtocolError as exc:
            exc.request_id = exc.request_id or request_id
            self._reply_error(conn, exc)
        except Exception:
            log.exception("%s: failed to handle %s", conn.conn_id, label)
            err = ProtocolError(ErrorCode.INTERNAL_ERROR, "internal error; the server goes on")
            err.request_id = request_id
            self._reply_error(conn, err)
        finally:
            self.metrics.message_latency.labels(label).observe(time.perf_counter() - started)

    async def _hello(self, conn: WsConnection, state: _ConnState, msg: Any) -> None:
        if state.attached:
            raise ProtocolError(ErrorCode.INVALID_STATE, "already authenticated")
        try:
            principal = self.issuer.verify(msg.token)
        except TokenError as exc:
            raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
        if principal.role is not Role.SHOPPER and not state.own_origin:
            reason = "staff and operators connect from shopcall's own pages"
            refused = ProtocolError(ErrorCode.FORBIDDEN, reason)
            refused.request_id = msg.id
            self._reply_error(conn, refused)
            conn.close(4403, reason)
            return
        conn.principal = principal
        payload = await self.switchboard.attach(conn)
        state.attached = True
        conn.send({"type": "welcome", "id": msg.id, "protocol_version": PROTOCOL_VERSION,
                   "role": principal.role.value, "subject": principal.subject,
                   "token_expires_at": principal.expires_at,
                   "heartbeat_interval_s": self.heartbeat_interval_s,
                   "server_time": time.time(), **payload})

    def _reply_error(self, conn: WsConnection, exc: ProtocolError) -> None:
        self.metrics.protocol_errors.labels(exc.code.value).inc()
        conn.send(error(exc.request_id, exc.code, exc.message, exc.details))


class _ConnState:
    __slots__ = ("attached", "own_origin")

    def __init__(self) -> None:
        self.attached = False
        self.own_origin = True
