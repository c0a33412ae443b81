"""Graceful shutdown: what the server does between SIGTERM and exit.

Order matters. First stop taking new work (the load balancer sees /readyz fail, new
WebSockets are refused, new conversations and calls are refused) and tell every client
(`server.shutdown`, then close 1001), except the people in a running call: their media
flows through this process, so they keep it until the call ends or the grace period does.
Then end what is left as `interrupted`, and let the app's cleanup close the connections,
the media and the database (whose writes are all flushed first).
"""

from __future__ import annotations

import asyncio
import logging
import time

from .switchboard import Switchboard

log = logging.getLogger(__name__)

POLL_S = 0.1


async def drain(switchboard: Switchboard, grace_s: float) -> None:
    switchboard.begin_shutdown(grace_s)
    deadline = time.monotonic() + grace_s
    calls = switchboard.running_calls()
    if calls:
        log.info("shutting down: waiting up to %.0f s for %d running call(s)", grace_s, calls)
    while switchboard.running_calls() and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        switchboard.release_idle_connections()  # hung up: nothing keeps them here now
    left = switchboard.running_calls()
    if left:
        log.info("shutting down: ending %d call(s) as interrupted", left)
    switchboard.end_calls("interrupted")
    await switchboard.flush()
    # Before the app's cleanup: aiohttp waits (up to a minute) for running handlers, and
    # each WebSocket handler runs until its connection closes.
    switchboard.close_connections()
