"""Shared fixtures: a real shopcall server process per test, and client factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .harness import ServerProcess, WsClient, http


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(**overrides: Any) -> ServerProcess:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        server = ServerProcess(workdir, **overrides)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[WsClient]]]:
    clients: list[WsClient] = []

    async def make(server: ServerProcess, role: Role | None = None,
                   subject: str | None = None, token: str | None = None) -> WsClient:
        if token is None and role is not None:
            token = server.token(role, subject or "x")
        client = await WsClient.connect(server.ws_url, token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def new_shopper(server: ServerProcess) -> str:
    status, body = await http("POST", server.base_url + "/api/shopper-token")
    assert status == 200, body
    return body["token"]
