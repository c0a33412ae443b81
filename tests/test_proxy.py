"""Behind a reverse proxy: clients are told apart by X-Forwarded-For, from trusted proxies
only. Issue 17's finding: 13 shoppers behind one proxy got 10 tokens and 3 refusals."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

from .harness import ServerProcess

pytestmark = pytest.mark.integration


async def tokens(server: ServerProcess, forwarded: list[str | None]) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as session:
        for value in forwarded:
            headers = {"X-Forwarded-For": value} if value else {}
            async with session.post(server.base_url + "/api/shopper-token", json={},
                                    headers=headers) as resp:
                statuses.append(resp.status)
    return statuses


async def test_shoppers_behind_a_trusted_proxy_are_counted_apart(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(trusted_proxies='["127.0.0.1/32"]')
    many = await tokens(server, [f"198.51.100.{i}" for i in range(13)])
    assert many == [200] * 13
    # One of them asking too often is still limited (10 a minute by default)...
    one = await tokens(server, ["203.0.113.7"] * 11)
    assert one == [200] * 10 + [429]
    # ... and cannot escape by writing other addresses in front: the proxy appends the
    # real one, and that is the one counted.
    spoofed = await tokens(server, [f"192.0.2.{i}, 203.0.113.7" for i in range(3)])
    assert spoofed == [429] * 3


async def test_forwarded_addresses_from_anyone_else_are_ignored(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()  # no trusted proxy: the peer address counts
    statuses = await tokens(server, [f"198.51.100.{i}" for i in range(11)])
    assert statuses == [200] * 10 + [429]
