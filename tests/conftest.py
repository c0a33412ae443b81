"""Shared fixtures: a real shopcall server process per test, and client factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.model import Role

from .harness import ServerProcess, WsClient, http

KINDS = ("unit", "integration", "browser")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is exactly one of unit, integration or browser (a test module is one kind:
    its `pytestmark`). `make test-fast` runs the unit set."""
    wrong = [f"{item.nodeid}: {kinds or 'none'}" for item in items
             if len(kinds := sorted({m.name for m in item.iter_markers()} & set(KINDS))) != 1]
    if wrong:
        raise pytest.UsageError("each test needs exactly one of the markers unit, integration "
                                "or browser:\n  " + "\n  ".join(wrong))


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test starts no process (no server, no browser, no tool): if it needs one, it
    is an integration test. Enforced, so the fast set stays fast and honest."""
    marker = next((m.name for m in request.node.iter_markers() if m.name in KINDS), None)
    if marker != "unit":
        return
    import asyncio
    import subprocess

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{request.node.nodeid} is marked unit but starts a process")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_shell", refuse)


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


async def accepted_conversation(server: ServerProcess, connect: Callable[..., Awaitable[WsClient]],
                                staff_id: str = "alice") -> tuple[WsClient, WsClient, str]:
    """A Lyon guitar conversation that staff_id went online for, was offered and accepted.
    Returns (staff client, shopper client, conversation id)."""
    staff = await connect(server, Role.STAFF, staff_id)
    await staff.ok("presence.set", status="online")
    shopper = await connect(server, token=await new_shopper(server))
    cid = (await shopper.ok("conversation.open", store="lyon", skill="guitars",
                            language="en"))["conversation"]["conversation_id"]
    await staff.expect("conversation.offered")
    await staff.ok("conversation.accept", conversation_id=cid)
    return staff, shopper, cid


async def new_shopper(server: ServerProcess) -> str:
    status, body = await http("POST", server.base_url + "/api/shopper-token")
    assert status == 200, body
    return body["token"]
