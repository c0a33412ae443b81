"""Application factory: wires storage, switchboard, media backend and the HTTP/WS edges.

Startup and shutdown hang on aiohttp's signals so a test can build several independent
servers in one process and each cleans up everything it opened.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from . import garments_api, http_api, reports_api, web_security
from .auth import TokenIssuer, resolve_secret
from .client_address import parse_networks
from .config import Settings
from .ice_servers import IceServerIssuer
from .keys import (
    ISSUER,
    MEDIA,
    METRICS,
    SETTINGS,
    SHOPPER_TOKEN_LIMITER,
    STORAGE,
    SWITCHBOARD,
    TRUSTED_PROXIES,
    TURN_CHECK,
)
from .media import MediaBackend, NoMediaBackend
from .metrics import SignalingMetrics
from .openapi import openapi_handler
from .qualification import QuestionSet
from .rate_limit import KeyedRateLimiter
from .sqlite_storage import SQLiteStorage
from .switchboard import RoutingSettings, Switchboard
from .turn_check import TurnCheckCollector, TurnChecker
from .ws import SignalingEndpoint

WEB_CLIENT_DIR = Path(__file__).resolve().parent.parent / "web_client"


def create_app(
    settings: Settings,
    *,
    media: MediaBackend | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    app = web.Application(middlewares=[web_security.cross_origin, http_api.json_errors],
                          client_max_size=64 * 1024)
    app[web_security.POLICY] = web_security.OriginPolicy(settings.http.allowed_origins,
                                                         settings.server.public_url)
    app.on_response_prepare.append(web_security.add_security_headers)
    app[TRUSTED_PROXIES] = parse_networks(settings.http.trusted_proxies)
    storage = SQLiteStorage(settings.database.path, synchronous=settings.database.synchronous)
    metrics = SignalingMetrics()
    garments = garments_api.GarmentStore(settings.tryon)
    media = media or media_backend(settings, lambda: switchboard_ref[0], garments)
    switchboard_ref: list[Switchboard] = []
    questions = (QuestionSet.from_config([q.model_dump() for q in settings.qualification])
                 if settings.qualification else None)
    r = settings.routing
    turn = settings.media.turn
    ice = IceServerIssuer([s.model_dump(exclude_none=True) for s in settings.media.ice_servers],
                          turn_urls=turn.urls, turn_secret=turn.secret,
                          lifetime_s=turn.credential_lifetime_s, clock=clock)
    switchboard = Switchboard(
        storage=storage, metrics=metrics, media=media, questions=questions, clock=clock,
        ice=ice,
        settings=RoutingSettings(
            offer_timeout_s=r.offer_timeout_s, missed_after_s=r.missed_after_s,
            heartbeat_timeout_s=r.heartbeat_timeout_s,
            staff_reconnect_grace_s=r.staff_reconnect_grace_s,
            default_handle_time_s=r.default_handle_time_s, allow_overflow=r.allow_overflow,
            max_text_chars=settings.limits.max_text_chars))
    switchboard_ref.append(switchboard)
    checker = None
    if turn.urls:
        checker = TurnChecker(ice, turn.urls, ca_file=turn.check_ca_file,
                              interval_s=turn.check_interval_s)
        metrics.registry.register(TurnCheckCollector(checker))
    app[TURN_CHECK] = checker
    issuer = TokenIssuer(resolve_secret(settings))
    per_minute = settings.auth.shopper_tokens_per_minute
    app[SETTINGS] = settings
    app[STORAGE] = storage
    app[METRICS] = metrics
    app[MEDIA] = media
    app[garments_api.GARMENTS] = garments
    collector = getattr(media, "collector", None)
    if collector is not None:  # the SFU's own metrics join the server's /metrics
        metrics.registry.register(collector)
    app[SWITCHBOARD] = switchboard
    app[ISSUER] = issuer
    app[SHOPPER_TOKEN_LIMITER] = KeyedRateLimiter(per_minute / 60.0, max(1.0, per_minute))

    endpoint = SignalingEndpoint(
        switchboard=switchboard, issuer=issuer, metrics=metrics,
        origins=app[web_security.POLICY],
        max_message_bytes=settings.limits.max_message_bytes,
        messages_per_second=settings.limits.messages_per_second,
        message_burst=settings.limits.message_burst,
        heartbeat_interval_s=r.heartbeat_interval_s)
    app.router.add_get("/ws", endpoint.handle)
    app.router.add_routes(http_api.routes)
    app.router.add_routes(reports_api.routes)
    app.router.add_routes(garments_api.routes)
    app.router.add_get("/api/openapi.json", openapi_handler)
    app.router.add_get("/metrics", http_api.metrics)
    app.router.add_get("/healthz", http_api.healthz)
    app.router.add_get("/readyz", http_api.readyz)
    _add_web_client(app, settings.server.static_dir or WEB_CLIENT_DIR)
    web_security.enable_preflight(app)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_close_connections)
    return app


def create_metrics_app(app: web.Application) -> web.Application:
    """/metrics alone, without a token, for a separate (private) listen address."""
    metrics_app = web.Application()
    metrics_app[METRICS] = app[METRICS]
    metrics_app.router.add_get("/metrics", http_api.open_metrics)
    return metrics_app


def media_backend(settings: Settings, switchboard: Callable[[], Switchboard],
                  garments: garments_api.GarmentStore | None = None) -> MediaBackend:
    if settings.media.backend == "none":
        return NoMediaBackend()
    from mediaserver.backend import SfuBackend  # the media stack only when it is used
    from mediaserver.bandwidth import StoreBudget

    def store_budget(store_id: str) -> StoreBudget:
        """Stores are edited live through the API, so read them at each decision."""
        store = switchboard().stores.get(store_id)
        if store is None:
            return StoreBudget()
        return StoreBudget(store.uplink_kbps * 1000 if store.uplink_kbps else None,
                           store.downlink_kbps * 1000 if store.downlink_kbps else None)

    tryon = None
    if settings.tryon.enabled and garments is not None:
        from mediaserver.tryon.service import TryOnService

        tryon = TryOnService(garments.catalogue, stores=settings.tryon.stores,
                             bitrate=settings.tryon.bitrate_kbps * 1000)
    return SfuBackend(tryon=tryon,
                      host_addresses=settings.media.announced_addresses,
                      public_addresses=settings.media.public_addresses,
                      video_floor_kbps=settings.media.video_floor_kbps,
                      store_budget=store_budget)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Open storage, seed configured stores and staff, start live state; undo on exit."""
    settings, storage, switchboard = app[SETTINGS], app[STORAGE], app[SWITCHBOARD]
    await storage.open()
    try:
        for store in settings.stores:
            await storage.upsert_store(store.to_model())
        for member in settings.staff:
            await storage.upsert_staff(member.to_model())
        await app[MEDIA].start()
        await switchboard.start()
        if app[TURN_CHECK] is not None:
            app[TURN_CHECK].start()
        yield
    finally:
        if app[TURN_CHECK] is not None:
            await app[TURN_CHECK].stop()
        await switchboard.stop()
        await app[MEDIA].stop()
        await storage.close()


async def _close_connections(app: web.Application) -> None:
    """aiohttp's on_shutdown: WebSocket handlers must end before the cleanup runs."""
    app[SWITCHBOARD].close_connections()


def _add_web_client(app: web.Application, root: Path) -> None:
    def page(name: str) -> Callable[[web.Request], web.StreamResponse]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(root / name, headers={"Cache-Control": "no-cache"})
        return handler

    app.router.add_get("/", page("shop.html"))
    app.router.add_get("/staff", page("staff.html"))
    app.router.add_get("/dashboard", page("dashboard.html"))
    if root.is_dir():
        app.router.add_static("/static/", root, follow_symlinks=False)
