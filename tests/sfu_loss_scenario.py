"""Run inside a private network namespace where nftables drops a share of UDP packets:
a 1:1 call through the SFU, then print what loss recovery did, as one JSON line.

Started by tests/test_sfu_loss.py as
  unshare -n sh -c 'ip link set lo up; nft ...drop...; python -m tests.sfu_loss_scenario'
"""

from __future__ import annotations

import asyncio
import json
import sys

from mediaserver.backend import SfuBackend
from signaling.media import MediaSessionSpec
from signaling.model import CallKind

from .media_peers import MediaPeer, colour_close
from .test_sfu_forwarding import BLUE, RED, Session


async def main(seconds: float) -> dict[str, object]:
    backend = SfuBackend(host_addresses=["127.0.0.1"])
    await backend.start()
    await backend.create_session(MediaSessionSpec(
        "ms_loss", "cnv", "call", CallKind.VIDEO, None, ()))
    session = Session(backend, "ms_loss")
    shopper = MediaPeer("shopper", RED, noise=True)
    staff = MediaPeer("staff", BLUE)
    try:
        await session.join("shopper:s", shopper)
        await session.join("staff:a", staff)
        await staff.wait_frames(5, timeout=30)
        start = staff.video_in()[0].frames
        await asyncio.sleep(seconds)
        router = session.router()
        publisher = router.participants["shopper:s"]
        receiver = router.participants["staff:a"]
        consumer = receiver.consumers[("shopper:s", "video")]
        producer = consumer.producer
        assert producer is not None
        received = staff.video_in()[0]
        return {
            "frames_decoded": received.frames - start,
            "colour_ok": colour_close(received.mean_bgr(), RED),
            "nacks_from_receiver": consumer.nacks,
            "retransmitted_to_receiver": consumer.retransmissions,
            "nacks_to_publisher": publisher.nacks_sent,
            "publisher_packets": producer.packets,
            "publisher_cumulative_lost": producer.stats.cumulative_lost,
        }
    finally:
        await shopper.close()
        await staff.close()
        await backend.stop()


if __name__ == "__main__":
    result = asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 6.0))
    print(json.dumps(result), flush=True)
