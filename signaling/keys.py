"""Typed keys of the objects an application carries (aiohttp's AppKey)."""

from __future__ import annotations

from aiohttp import web

from .auth import TokenIssuer
from .config import Settings
from .media import MediaBackend
from .metrics import SignalingMetrics
from .rate_limit import KeyedRateLimiter
from .storage import Storage
from .switchboard import Switchboard

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
SWITCHBOARD = web.AppKey("switchboard", Switchboard)
ISSUER = web.AppKey("issuer", TokenIssuer)
METRICS = web.AppKey("metrics", SignalingMetrics)
MEDIA = web.AppKey("media", MediaBackend)
SHOPPER_TOKEN_LIMITER = web.AppKey("shopper_token_limiter", KeyedRateLimiter)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", list)
TURN_CHECK = web.AppKey("turn_check", object)  # TurnChecker, or None without [media.turn]
