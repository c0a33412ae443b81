"""Who a request really comes from, behind a reverse proxy.

A deployment sits behind nginx, HAProxy or a cloud load balancer: every request then comes
from the proxy's address, so anything keyed by client address (the shopper-token rate
limit) would lump all shoppers together. Proxies append the client to `X-Forwarded-For`;
only the proxies listed in `[http] trusted_proxies` are believed, and the client is the
rightmost address that is not one of them (anything further left was written by the
client itself, and can be forged).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    """'10.0.0.0/8', '127.0.0.1' (a single address) -> networks; ValueError names a bad one."""
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values]


def _trusted(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: web.BaseRequest, trusted: list[Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    rightmost untrusted address of X-Forwarded-For."""
    peer = request.remote or "?"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
            if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def forwarded_https(request: web.BaseRequest, trusted: list[Network]) -> bool:
    """Whether the client spoke HTTPS: directly, or to a trusted proxy that says so."""
    if request.secure:
        return True
    return bool(trusted) and _trusted(request.remote or "", trusted) and \
        request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"
