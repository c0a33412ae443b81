"""TURN credentials against a real coturn started from the shipped configuration.

The credentials are the ones the server puts in a participant's `join` (minted by
signaling/ice_servers.py with `[media.turn]`); a TURN client (aioice's, the one aiortc uses)
allocates with them over UDP, TCP and TLS and relays to the "SFU" (an echo socket at the one
private address the configuration allows). Expired credentials and a wrong secret are refused
(401), and the relay refuses to reach any other private address (403), so credentials handed
to every shopper's browser cannot be used to reach the shop's internal network.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from signaling.ice_servers import IceServerIssuer, turn_credential, turn_username

from .conftest import accepted_conversation
from .coturn import Coturn, missing

pytestmark = pytest.mark.integration

SECRET = "coturn-test-secret-0123456789abcdef"
SFU = "127.0.0.1"  # the one private address relaying may reach (allowed-peer-ip)


class Echo(asyncio.DatagramProtocol):
    """The stand-in SFU: sends every datagram back where it came from (the relay)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(b"echo:" + data, addr)


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


def free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def coturn(tmp_path: Path):
    reason = missing()
    if reason:
        pytest.fail(reason)
    # Loopback peers are refused by coturn unless allowed; this test's "SFU" is on loopback
    # (a deployment's is on a real address, which allowed-peer-ip alone opens).
    server = Coturn(tmp_path / "coturn", address="127.0.0.1", allowed_peers=[SFU],
                    secret=SECRET, port=free_port(2), tls_port=free_port(1),
                    extra=("allow-loopback-peers", "verbose")).start()
    yield server
    server.stop()


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return context


async def relay(coturn: Coturn, username: str, password: str, transport: str,
                peer: tuple[str, int]) -> bytes:
    port = coturn.tls_port if transport == "tls" else coturn.port
    turn, inbox = await create_turn_endpoint(
        Inbox, ("127.0.0.1", port), username, password,
        transport="udp" if transport == "udp" else "tcp",
        ssl=client_tls() if transport == "tls" else None)
    try:
        turn.sendto(b"hello " + transport.encode(), peer)
        return await asyncio.wait_for(inbox.queue.get(), 5)
    finally:
        turn.close()


async def test_minted_credentials_relay_over_udp_tcp_and_tls(coturn: Coturn) -> None:
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=(SFU, 0))
    sfu = echo.get_extra_info("sockname")
    issuer = IceServerIssuer(turn_urls=[f"turns:127.0.0.1:{coturn.tls_port}?transport=tcp"],
                             turn_secret=SECRET, lifetime_s=600, clock=time.time)
    [server] = issuer.for_participant("shopper:shp_test")
    assert server["username"].endswith(":shopper:shp_test")
    try:
        for transport in ("udp", "tcp", "tls"):
            reply = await relay(coturn, server["username"], server["credential"], transport,
                                sfu)
            assert reply == b"echo:hello " + transport.encode()
    finally:
        echo.close()
    await asyncio.sleep(0.5)  # coturn writes its log from another thread
    log = coturn.log()
    assert "shopper:shp_test" in log and "ALLOCATE processed, success" in log, log[-2000:]


async def test_expired_and_foreign_credentials_are_refused(coturn: Coturn) -> None:
    peer = (SFU, 9)
    expired = turn_username("shopper:late", time.time() - 60)
    wrong_secret = turn_username("shopper:forged", time.time() + 600)
    for username, password in ((expired, turn_credential(SECRET, expired)),
                               (wrong_secret, turn_credential("not-the-secret", wrong_secret))):
        with pytest.raises(stun.TransactionFailed) as refused:
            await relay(coturn, username, password, "udp", peer)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401, username


async def test_the_relay_reaches_only_the_media_server(coturn: Coturn) -> None:
    username = turn_username("shopper:curious", time.time() + 600)
    turn, _ = await create_turn_endpoint(Inbox, ("127.0.0.1", coturn.port), username,
                                         turn_credential(SECRET, username))
    try:
        protocol = turn._TurnTransport__inner_protocol  # aioice's TURN client (pinned)
        await protocol.channel_bind(0x4000, (SFU, 9))  # allowed
        for n, internal in enumerate(("127.0.0.5", "10.1.2.3", "192.168.1.10",
                                      "172.16.0.1", "169.254.169.254")):
            with pytest.raises(stun.TransactionFailed) as refused:
                await protocol.channel_bind(0x4001 + n, (internal, 80))
            assert refused.value.response.attributes["ERROR-CODE"][0] == 403, internal
    finally:
        turn.close()


async def test_a_participant_joins_with_credentials_coturn_accepts(coturn: Coturn,
                                                                   server_factory,
                                                                   connect) -> None:
    url = f"turn:127.0.0.1:{coturn.port}?transport=udp"
    server = server_factory(extra_config=f'[media.turn]\nurls = ["{url}"]\n'
                                         f'secret = "{SECRET}"\ncredential_lifetime_s = 600\n')
    alice, shopper, cid = await accepted_conversation(server, connect)
    call_id = (await shopper.ok("call.propose", conversation_id=cid,
                                kind="video"))["call"]["call_id"]
    started = await alice.ok("call.accept", call_id=call_id)
    event = await shopper.expect("call.started")
    for join, who in ((started["join"], "staff:alice"),
                      (event["join"], "shopper:" + shopper.welcome["subject"])):
        [turn] = [s for s in join["ice_servers"] if s.get("username")]
        assert turn["urls"] == [url]
        expiry, user = turn["username"].split(":", 1)
        assert user == who and 500 < int(expiry) - time.time() <= 600
        loop = asyncio.get_running_loop()
        echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=(SFU, 0))
        try:
            reply = await relay(coturn, turn["username"], turn["credential"], "udp",
                                echo.get_extra_info("sockname"))
        finally:
            echo.close()
        assert reply == b"echo:hello udp"
    # No static TURN password anywhere in what clients get.
    assert SECRET not in str(started) and SECRET not in str(event)
