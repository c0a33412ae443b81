"""A media server behind 1:1 NAT (`[media] public_addresses`), with a real NAT.

In a private network namespace, nftables maps 127.0.0.2 (the "public" address) onto
127.0.0.1 (the server's "private" interface address), port for port, as a cloud's elastic IP
does. The client is only given what a browser on the Internet could use: the server's host
candidates are removed from the answer, so it connects only if the server announced its
public address. It does, as a server reflexive candidate, and media flows; without the
setting the same client cannot connect.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from aiortc import RTCSessionDescription

from mediaserver.backend import SfuBackend
from signaling.media import MediaSessionSpec
from signaling.model import CallKind

from .browser_harness import run_in_private_network
from .media_peers import MediaPeer

pytestmark = pytest.mark.integration

INSIDE = "SHOPCALL_SFU_NAT_INSIDE"
PRIVATE, PUBLIC = "127.0.0.1", "127.0.0.2"


def test_server_behind_nat() -> None:
    if shutil.which("nft") is None:
        pytest.fail("nft is not installed (run: make system-deps)")
    run_in_private_network(f"{Path(__file__).resolve()}::test_inside", INSIDE,
                           expect_passed=1, timeout_s=120)


def reachable_only_from_outside(sdp: str) -> str:
    """The answer as seen from the Internet: host candidates (private) are useless there."""
    return "\r\n".join(line for line in sdp.split("\r\n")
                       if not re.match(r"a=candidate:\S+ \d+ \S+ \d+ \S+ \d+ typ host", line))


def without_candidates(sdp: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n")
                       if not line.startswith(("a=candidate:", "a=end-of-candidates")))


async def call(backend: SfuBackend, session: str) -> tuple[MediaPeer, MediaPeer]:
    await backend.create_session(MediaSessionSpec(session, "cnv", "call_" + session,
                                                  CallKind.VIDEO, None, ("a", "b")))
    peers = MediaPeer("a", (0, 0, 255)), MediaPeer("b", (255, 0, 0))
    for name, peer in zip(("a", "b"), peers, strict=True):
        # The client is behind a NAT of its own: the server learns its address only from
        # the checks it sends (peer reflexive), never from its candidates.
        answer = await backend.offer(session, name, without_candidates(await peer.offer()))
        assert ("typ srflx raddr 127.0.0.1" in answer) == bool(backend.public_addresses)
        await peer.pc.setRemoteDescription(RTCSessionDescription(
            reachable_only_from_outside(answer), "answer"))
    return peers


@pytest.mark.skipif(not os.environ.get(INSIDE), reason="run by test_server_behind_nat in a "
                                                       "private network namespace")
async def test_inside() -> None:
    # The NAT: what is sent to the public address reaches the private one, same port.
    for rule in (["add", "table", "ip", "nat"],
                 ["add", "chain", "ip", "nat", "out", "{ type nat hook output priority -100; }"],
                 ["add", "rule", "ip", "nat", "out", "ip", "daddr", PUBLIC, "udp", "dport",
                  "1-65535", "dnat", "to", PRIVATE]):
        subprocess.run(["nft", *rule], check=True)  # noqa: ASYNC221 (set-up, nothing runs yet)

    behind_nat = SfuBackend(host_addresses=[PRIVATE], public_addresses=[PUBLIC])
    a, b = await call(behind_nat, "nat")
    try:
        await b.wait_frames(10)
        await a.wait_frames(10)
        [router] = behind_nat.routers.values()
        pairs = [p.connection.pair for p in router.participants.values()]
        assert all(p is not None and p["local"] == "host" for p in pairs), pairs
    finally:
        for peer in (a, b):
            await peer.pc.close()
        await behind_nat.stop()

    # The same server without the setting: the client has nothing it can reach.
    unannounced = SfuBackend(host_addresses=[PRIVATE])
    a, b = await call(unannounced, "plain")
    try:
        await asyncio.sleep(3)
        assert not a.video_in() or all(r.frames == 0 for r in a.video_in())
        assert not any(p.peer.connected for r in unannounced.routers.values()
                       for p in r.participants.values())
    finally:
        for peer in (a, b):
            await peer.pc.close()
        await unannounced.stop()
