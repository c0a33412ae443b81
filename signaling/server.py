"""Run the signalling server on uvloop until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

import uvloop
from aiohttp import web

from .app import create_app, create_metrics_app
from .auth import TokenIssuer, resolve_secret
from .config import Settings
from .keys import SWITCHBOARD
from .model import Role
from .shutdown import drain

log = logging.getLogger("shopcall")


def serve(settings: Settings, *, banner: Callable[[str], None] | None = None,
          demo: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(_serve(settings, banner or (lambda _: None), demo))


async def _serve(settings: Settings, banner: Callable[[str], None], demo: bool) -> None:
    # [server] tls_cert/tls_key: HTTPS (and wss:) served directly; validated at load.
    tls = settings.server.ssl_context()
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port, ssl_context=tls)
    await site.start()
    host, port = runner.addresses[0][:2]
    base = settings.server.public_url or f"{'https' if tls else 'http'}://{host}:{port}"
    runners = [runner]
    metrics_line = None
    if settings.metrics.host is not None:
        # Plain HTTP even when the main site has TLS: the separate metrics address is meant
        # for a private network or loopback that only Prometheus reaches, and Prometheus
        # scrapes it without a certificate to manage (anything public: the main site's
        # /metrics, with its operator token, over HTTPS).
        metrics_runner = web.AppRunner(create_metrics_app(app), access_log=None,
                                       handle_signals=False)
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, settings.metrics.host, settings.metrics.port).start()
        runners.insert(0, metrics_runner)
        m_host, m_port = metrics_runner.addresses[0][:2]
        metrics_line = f"  metrics:       http://{m_host}:{m_port}/metrics (no token)"
    # Tests and scripts read the first line to learn the port when started with --port 0.
    banner(f"shopcall listening on {base}")
    banner(f"  shopper page:  {base}/")
    banner(f"  staff console: {base}/staff")
    if metrics_line:
        banner(metrics_line)
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
        log.info("shutting down (grace period %.0f s)", settings.server.shutdown_grace_s)
        draining = asyncio.ensure_future(drain(app[SWITCHBOARD],
                                               settings.server.shutdown_grace_s))
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal: stop waiting
            loop.add_signal_handler(sig, draining.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await draining
    finally:
        for r in runners:
            await r.cleanup()
        log.info("stopped")
