"""A real bandwidth limit on one receiver: run inside `unshare -n` (as root), print JSON.

Started by tests/test_sfu_tbf.py as `unshare -n sh -c 'ip link set lo up; python -m
tests.sfu_tbf_scenario SECONDS RATE_KBIT'`. In that private namespace ("A", which holds the
SFU, the publisher and an unconstrained receiver on 127.0.0.1) it makes a second namespace
("B", held by a `sleep` child), joins them with a veth pair (10.77.0.1 in A, 10.77.0.2 in
B) and puts a token bucket (tc tbf) on A's end, so everything the SFU sends to B is
limited to RATE_KBIT. The constrained receiver is an ordinary aiortc peer of this process
whose ICE sockets are created inside B (the event loop thread enters B with setns while
the peer gathers, then comes back), so its media really crosses the limited link.

The publisher sends VP8 with temporal layers; the SFU is expected to thin them for the
constrained receiver while the other one keeps every frame.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.layered_vp8 import LayeredPublisher, encode_l1t3, moving_frames
from mediaserver.aiortc_adapter import use_host_addresses
from mediaserver.backend import SfuBackend
from signaling.media import MediaSessionSpec
from signaling.model import CallKind

from .media_peers import MediaPeer
from .test_sfu_forwarding import Session

CLONE_NEWNET = 0x40000000
SERVER_ADDRESSES = ["127.0.0.1", "10.77.0.1"]
_libc = ctypes.CDLL(None, use_errno=True)


def _sh(*commands: str) -> None:
    for command in commands:
        subprocess.run(command, shell=True, check=True)


def _enter(ns_fd: int) -> None:
    if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def make_limited_link(rate_kbit: int) -> subprocess.Popen[bytes]:
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    time.sleep(0.2)  # let unshare create the namespace before we move a link into it
    _sh("ip link add sc0 type veth peer name sc1",
        f"ip link set sc1 netns {holder.pid}",
        "ip addr add 10.77.0.1/24 dev sc0", "ip link set sc0 up",
        f"nsenter -t {holder.pid} -n sh -c 'ip link set lo up && "
        "ip addr add 10.77.0.2/24 dev sc1 && ip link set sc1 up'",
        # A small bucket and queue: a link that really is this slow, not a burst allowance.
        f"tc qdisc add dev sc0 root tbf rate {rate_kbit}kbit burst 4kb latency 40ms")
    return holder


async def join_inside(session: Session, pid: str, peer: MediaPeer, holder_pid: int) -> None:
    """Join with the peer's ICE sockets created in the holder's namespace."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    away = os.open(f"/proc/{holder_pid}/ns/net", os.O_RDONLY)
    session.peers[pid] = peer
    try:
        async with peer.negotiating:
            _enter(away)
            use_host_addresses(["10.77.0.2"])
            try:
                offer = await peer.offer()  # gathers: the sockets are born in B
            finally:
                _enter(home)
                use_host_addresses(SERVER_ADDRESSES)
            answer = await session.backend.offer(session.session_id, pid, offer)
            await peer.accept_answer(answer)
    finally:
        os.close(home)
        os.close(away)


async def main(seconds: float, rate_kbit: int) -> dict[str, Any]:
    holder = make_limited_link(rate_kbit)
    backend = SfuBackend(host_addresses=SERVER_ADDRESSES)
    await backend.start()
    await backend.create_session(MediaSessionSpec(
        "ms_tbf", "cnv", "call", CallKind.VIDEO, None, ()))
    session = Session(backend, "ms_tbf")
    publisher = LayeredPublisher(encode_l1t3(moving_frames(240), bitrate=1_000_000))
    full = MediaPeer("full", video=False)
    limited = MediaPeer("limited", video=False)
    try:
        await session.join("staff:dave", publisher)  # type: ignore[arg-type]
        await session.join("shopper:s1", full)
        await join_inside(session, "staff:alice", limited, holder.pid)
        await full.wait_frames(10, timeout=30)
        await limited.wait_frames(1, timeout=30)
        router = session.router()
        alice = router.participants["staff:alice"]
        shopper = router.participants["shopper:s1"]
        timeline = []
        marks = (full.video_in()[0].frames, limited.video_in()[0].frames)
        for second in range(int(seconds)):
            await asyncio.sleep(1.0)
            now = (full.video_in()[0].frames, limited.video_in()[0].frames)
            consumer = alice.consumers[("staff:dave", "video")]
            timeline.append({
                "t": second + 1,
                "full_fps": now[0] - marks[0], "limited_fps": now[1] - marks[1],
                "limited_layer": consumer.forwarded_layer,
                "limited_bps": round(consumer.bitrate_bps),
                "limited_estimate_bps": round(alice.available_bps),
                "limited_loss": consumer.rr_fraction_lost / 256,
                "full_layer": shopper.consumers[("staff:dave", "video")].forwarded_layer,
                "full_bps": round(shopper.consumers[("staff:dave", "video")].bitrate_bps),
            })
            marks = now
        return {"rate_kbit": rate_kbit, "timeline": timeline,
                "layer_switches": alice.consumers[("staff:dave", "video")].layer_switches,
                "published_frames": publisher.sent_frames}
    finally:
        for peer in (full, limited, publisher):
            await peer.close()
        await backend.stop()
        holder.kill()
        holder.wait()


if __name__ == "__main__":
    result = asyncio.run(main(float(sys.argv[1]), int(sys.argv[2])))
    print(json.dumps(result), flush=True)
