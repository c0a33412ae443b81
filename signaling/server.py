"""Run the signalling server on uvloop until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

import uvloop
from aiohttp import web

from .app import create_app
from .auth import TokenIssuer, resolve_secret
from .config import Settings
from .model import Role

log = logging.getLogger("shopcall")


def serve(settings: Settings, *, banner: Callable[[str], None] | None = None,
          demo: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(_serve(settings, banner or (lambda _: None), demo))


async def _serve(settings: Settings, banner: Callable[[str], None], demo: bool) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = settings.server.public_url or f"http://{host}:{port}"
    # Tests and scripts read the first line to learn the port when started with --port 0.
    banner(f"shopcall listening on {base}")
    banner(f"  shopper page:  {base}/")
    banner(f"  staff console: {base}/staff")
    banner(f"  dashboard:     {base}/dashboard")
    if demo:
        issuer = TokenIssuer(resolve_secret(settings))
        if settings.staff:
            first = settings.staff[0]
            token = issuer.mint(Role.STAFF, first.id, settings.auth.staff_token_ttl_s)
            banner(f"  demo staff token ({first.name}, {first.store}): {token}")
        # The dashboard and the reporting API need an operator: one for the demo too.
        token = issuer.mint(Role.OPERATOR, "demo-operator", settings.auth.operator_token_ttl_s)
        banner(f"  demo operator token (dashboard, reports): {token}")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
