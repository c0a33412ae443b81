"""The server checks its own TURN relay: one allocation per configured URL, with credentials
minted exactly as for participants, at start and every few minutes.

Why: a relay that refuses shopcall's credentials (a secret that drifted from coturn's
static-auth-secret, a clock off by hours) fails silently where it hurts: Chromium reports no
`icecandidateerror` for a TURN-over-TLS 401, so the shopper's browser only sees that nothing
connects, and only calls from networks that block UDP are hit. The check turns that into a
log line, a metric (`shopcall_turn_check_ok{url}`) and a line in `/api/media-sessions`, and
lets a failed connection name the likely cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .ice_servers import IceServerIssuer

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 300.0
CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class TurnTarget:
    url: str
    host: str
    port: int
    transport: str  # "udp" | "tcp"
    tls: bool


def parse_turn_url(url: str) -> TurnTarget:
    """turn:host[:port][?transport=udp|tcp] and turns:host[:port][?transport=tcp]
    (RFC 7065); IPv6 hosts in brackets. ValueError when it is none of those."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("turn", "turns"):
        raise ValueError(f"{url!r} is not a turn: or turns: URL")
    address, _, query = rest.partition("?")
    transport = (parse_qs(query).get("transport") or ["tcp" if scheme == "turns" else "udp"])[0]
    if transport not in ("udp", "tcp") or (scheme == "turns" and transport != "tcp"):
        raise ValueError(f"{url!r}: unsupported transport {transport!r}")
    if address.startswith("["):
        host, _, port_text = address[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = address.partition(":")
    if not host:
        raise ValueError(f"{url!r} has no host")
    port = int(port_text) if port_text else (5349 if scheme == "turns" else 3478)
    return TurnTarget(url, host, port, transport, scheme == "turns")


@dataclass(slots=True)
class TurnStatus:
    url: str
    ok: bool | None = None  # None: not checked yet
    error: str | None = None
    checked_at: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "error": self.error,
                "checked_at": self.checked_at}


def explain(exc: BaseException) -> str:
    """What an operator should read for a failed allocation."""
    from aioice import stun

    if isinstance(exc, stun.TransactionFailed):
        code, reason = exc.response.attributes.get("ERROR-CODE", (0, ""))
        if code == 401:
            return ("401 Unauthorized: the TURN server refuses shopcall's credentials "
                    "(media.turn.secret must equal coturn's static-auth-secret; clocks "
                    "must agree)")
        return f"{code} {reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    return f"{type(exc).__name__}: {exc}"


class TurnChecker:
    """Runs the checks (owned by the app's lifecycle) and keeps their last results."""

    def __init__(self, issuer: IceServerIssuer, urls: list[str], *,
                 ca_file: Path | None = None, interval_s: float = CHECK_INTERVAL_S) -> None:
        self.issuer = issuer
        self.targets = [parse_turn_url(u) for u in urls]
        self.status = {t.url: TurnStatus(t.url) for t in self.targets}
        self.interval_s = interval_s
        self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.status.values()]

    def failing(self) -> list[TurnStatus]:
        return [s for s in self.status.values() if s.ok is False]

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(t) for t in self.targets))

    async def _check(self, target: TurnTarget) -> None:
        from aioice.turn import create_turn_endpoint

        [server] = [s for s in self.issuer.for_participant("shopcall:turn-check")
                    if s.get("username")]
        status = self.status[target.url]
        try:
            transport, _ = await asyncio.wait_for(create_turn_endpoint(
                asyncio.DatagramProtocol, (target.host, target.port), server["username"],
                server["credential"], lifetime=60, transport=target.transport,
                ssl=self._tls if target.tls else None), CHECK_TIMEOUT_S)
        except Exception as exc:  # every way a relay can fail is a result here
            error = explain(exc)
            if status.ok is not False or status.error != error:
                log.warning("TURN check %s failed: %s", target.url, error)
            status.ok, status.error = False, error
        else:
            transport.close()
            if status.ok is False:
                log.info("TURN check %s passes again", target.url)
            status.ok, status.error = True, None
        status.checked_at = time.time()

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="turn-check")

    async def _loop(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class TurnCheckCollector:
    """`shopcall_turn_check_ok{url}`: 1 when the last check allocated, 0 when it failed."""

    def __init__(self, checker: TurnChecker) -> None:
        self.checker = checker

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("shopcall_turn_check_ok",
                                  "Whether the server's own TURN allocation with minted "
                                  "credentials succeeded at its last check (per URL).",
                                  labels=["url"])
        for status in self.checker.status.values():
            if status.ok is not None:
                gauge.add_metric([status.url], 1.0 if status.ok else 0.0)
        yield gauge
