"""Who may talk to the server from a web page, and the headers every response carries.

A shop embeds the widget with one script tag on its own site, so the widget's files and the
few endpoints it calls are fetched cross-origin (a module script is fetched in CORS mode, and
JSON bodies and bearer tokens trigger preflights). Everything else (the staff console, the
dashboard, the operator API) stays same-origin: a page on any other site gets no CORS
headers, and a request it sends anyway is refused.

One policy decides all of it, so the allow-list that opens the widget to a shop's site is the
same one the WebSocket checks at its handshake. Written here rather than with aiohttp-cors
because that library only adds CORS headers per registered route: the origin refusal for
non-embeddable routes, the WebSocket check and the security headers need the same decision.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from .client_address import forwarded_https
from .keys import TRUSTED_PROXIES
from .protocol import ErrorCode

# Routes a shop page may call from its own origin: what widget.js fetches, and what a
# shopper's token may read. Keyed by the route's canonical path.
EMBEDDABLE_ROUTES = frozenset({
    "/api/shopper-token",
    "/api/availability",
    "/api/qualification",
    "/api/garments",
    "/api/conversations",
    "/api/conversations/{conversation_id}",
})
STATIC_PREFIX = "/static/"
PREFLIGHT_MAX_AGE_S = 600
ALLOWED_REQUEST_HEADERS = "Authorization, Content-Type"

_ORIGIN = re.compile(r"^(https?)://(\*\.)?([a-z0-9.-]+|\[[0-9a-f:]+\])(:\d{1,5})?$")
_DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_origin(value: str) -> str | None:
    """'HTTPS://Shop.example:443/' -> 'https://shop.example'; None when not an origin."""
    value = value.strip().lower().rstrip("/")
    m = _ORIGIN.match(value)
    if m is None:
        return None
    scheme, wildcard, host, port = m.groups()
    if port is not None and int(port[1:]) == _DEFAULT_PORT[scheme]:
        port = None
    if port is not None and not 0 < int(port[1:]) < 65536:
        return None
    return f"{scheme}://{wildcard or ''}{host}{port or ''}"


class OriginPolicy:
    """The shops' sites allowed to embed the widget, and shopcall's own origin.

    `allowed` holds origins as configured (`https://www.shop.example`, or
    `https://*.shop.example` for every subdomain). Shopcall's own origin is the configured
    public URL's, or, without one, the one the request was addressed to (its Host header):
    the demo page, the console and the dashboard are served from there.
    """

    def __init__(self, allowed: Iterable[str], public_url: str | None = None) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[tuple[str, str]] = []  # (scheme://, .domain[:port])
        for origin in allowed:
            norm = normalise_origin(origin)
            if norm is None:
                raise ValueError(f"not an origin: {origin!r}")
            if "://*." in norm:
                scheme, rest = norm.split("://*.", 1)
                self.suffixes.append((f"{scheme}://", "." + rest))
            else:
                self.exact.add(norm)
        self.public = normalise_origin(_origin_of(public_url)) if public_url else None

    def is_own(self, origin: str, request: web.BaseRequest) -> bool:
        norm = normalise_origin(origin)
        if norm is None:
            return False
        if self.public is not None:
            return norm == self.public
        # Without a public URL: same host and port as the request's Host header, whatever
        # the scheme (a TLS-terminating proxy forwards plain HTTP with the browser's Host).
        netloc = norm.split("://", 1)[1]
        host = (request.host or "").lower()
        scheme = norm.split("://", 1)[0]
        return netloc == host or netloc == _strip_default_port(host, scheme)

    def allows_embedding(self, origin: str) -> bool:
        norm = normalise_origin(origin)
        if norm is None or "*" in norm:
            return False
        if norm in self.exact:
            return True
        return any(norm.startswith(scheme) and _host_port(norm).endswith(suffix)
                   for scheme, suffix in self.suffixes)

    def admits(self, origin: str | None, request: web.BaseRequest, *, embeddable: bool) -> bool:
        """May a request with this Origin header reach the route? No header: not a
        cross-origin browser request (same-origin GETs, servers, command-line tools)."""
        if origin is None:
            return True
        if self.is_own(origin, request):
            return True
        return embeddable and self.allows_embedding(origin)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _host_port(norm: str) -> str:
    return norm.split("://", 1)[1]


def _strip_default_port(host: str, scheme: str) -> str:
    suffix = f":{_DEFAULT_PORT.get(scheme, 0)}"
    return host[: -len(suffix)] if host.endswith(suffix) else host


def is_embeddable(request: web.Request) -> bool:
    if request.path.startswith(STATIC_PREFIX):
        return True
    route = request.match_info.route
    resource = route.resource
    return resource is not None and resource.canonical in EMBEDDABLE_ROUTES


def _allowed_methods(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if request.path.startswith(STATIC_PREFIX) or resource is None:
        return "GET, HEAD"
    methods = {route.method for route in resource if route.method != hdrs.METH_ANY}
    return ", ".join(sorted(methods | {"OPTIONS"}))


POLICY = web.AppKey("origin_policy", OriginPolicy)

def enable_preflight(app: web.Application) -> None:
    """Give every embeddable API route an OPTIONS route, so a preflight resolves to its
    resource (and its methods) instead of a 405; `cross_origin` answers it. Call once all
    routes are added."""
    async def unanswered(request: web.Request) -> web.Response:
        return origin_refused()  # a preflight cross_origin did not take: not for us

    for resource in app.router.resources():
        if resource.canonical in EMBEDDABLE_ROUTES:
            resource.add_route(hdrs.METH_OPTIONS, unanswered)


def origin_refused() -> web.Response:
    return web.json_response(
        {"error": {"code": ErrorCode.FORBIDDEN.value,
                   "message": "this origin is not allowed (see [http] allowed_origins)"}},
        status=403, headers={"Vary": "Origin"})


@web.middleware
async def cross_origin(request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                       ) -> web.StreamResponse:
    """CORS for the embeddable routes, refusal of foreign origins everywhere else."""
    policy = request.app[POLICY]
    origin = request.headers.get(hdrs.ORIGIN)
    embeddable = is_embeddable(request)
    if request.path == "/ws":  # checked by the endpoint: it knows the role after hello
        return await handler(request)
    if not policy.admits(origin, request, embeddable=embeddable):
        return origin_refused()
    cors = origin is not None and embeddable and not policy.is_own(origin, request)
    if request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in \
            request.headers:
        if origin is None or not embeddable:
            return origin_refused()
        return web.Response(status=204, headers={
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: _allowed_methods(request),
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_REQUEST_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
            hdrs.VARY: "Origin"})
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if cors:
            exc.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin  # type: ignore[assignment]
            exc.headers[hdrs.VARY] = "Origin"
        raise
    if cors:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin  # type: ignore[assignment]
        response.headers.add(hdrs.VARY, "Origin")
    elif embeddable:
        response.headers.add(hdrs.VARY, "Origin")  # caches must not mix the two answers
    return response


# Security headers ---------------------------------------------------------------------------

# The console, dashboard and demo page load only their own files: no inline script or style,
# no plug-ins, never framed (clickjacking of the staff console).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# API answers are data; the weekly report's HTML carries its own inline style, no script.
API_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
PAGES = frozenset({"/", "/staff", "/dashboard"})


def secure_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith("https://")


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """aiohttp's on_response_prepare signal: every response, static files and errors too."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    path = request.path
    if path in PAGES:
        headers["Content-Security-Policy"] = PAGE_CSP
        headers["X-Frame-Options"] = "DENY"
        headers["Permissions-Policy"] = "camera=(self), microphone=(self), geolocation=()"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
    elif path.startswith(STATIC_PREFIX):
        # The widget's files are loaded by shops' pages: allow that under COEP as well.
        headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    elif path != "/ws":
        headers.setdefault("Content-Security-Policy", API_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
    if forwarded_https(request, request.app.get(TRUSTED_PROXIES) or []):
        headers["Strict-Transport-Security"] = "max-age=31536000"
