"""The media server process for benchmarks.fanout: one media session, a tiny loopback API.

Run by the benchmark, not by hand: ``python -m benchmarks.sfu_server --mode sfu|relay``
prints ``PORT <n>`` on stdout once it listens on 127.0.0.1:<n>.

Why not the signalling server: signalling admits exactly the call's shopper and staff
participants to a media session (signaling/ws.py checks the party), so it cannot fan one
publisher out to 256 subscribers, and a conversation plus call per subscriber would measure
signalling rather than forwarding. This process runs the same ``SfuBackend`` that
signalling uses (on uvloop, like ``shopcall serve``) in its own process, so that its CPU
time can be read from /proc and the process pinned to a core.

API (JSON over HTTP on loopback):
  POST /offer  {participant_id, sdp} -> {sdp}      a participant's offer, the server's answer
  POST /answer {participant_id, sdp} -> {}         answer to a server-initiated offer
  GET  /events (WebSocket)                         server offers: {participant_id, sdp}
  GET  /stats  -> {forwarded_packets, forwarded_bytes, received_packets, participants,
                   paths}   paths: which code forwarded (C or Python fan-out, SRTP protect)

``--mode relay`` is the baseline: a plain aiortc server where the publisher's tracks go
through aiortc's MediaRelay (decoded once) and each subscriber's RTCRtpSender encodes its
own copy (buffered=False, so a slow encoder drops frames instead of queueing them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

from aiohttp import WSMsgType, web

SESSION = "ms_bench"
PUBLISHER = "publisher"


class SfuMode:
    def __init__(self) -> None:
        from mediaserver.backend import SfuBackend
        from signaling.media import MediaSessionSpec
        from signaling.model import CallKind

        self.backend = SfuBackend(host_addresses=["127.0.0.1"])
        self.spec = MediaSessionSpec(SESSION, "cnv_bench", "call_bench", CallKind.VIDEO, None,
                                     (PUBLISHER,))
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self.backend.bind(self._notify)

    def _notify(self, participant_id: str, message: dict[str, Any]) -> None:
        if message.get("type") == "media.offer":
            for queue in self.listeners:
                queue.put_nowait({"participant_id": participant_id, "sdp": message["sdp"]})

    async def start(self) -> None:
        await self.backend.start()
        await self.backend.create_session(self.spec)

    async def stop(self) -> None:
        await self.backend.stop()

    async def offer(self, participant_id: str, sdp: str) -> str:
        return await self.backend.offer(SESSION, participant_id, sdp)

    async def answer(self, participant_id: str, sdp: str) -> None:
        await self.backend.answer(SESSION, participant_id, sdp)

    async def stats(self) -> dict[str, Any]:
        from mediaserver import consumer as consumer_module

        router = self.backend.routers[SESSION]
        forwarded = octets = received = retransmitted = 0
        protect = sorted({p.peer.srtp_protect for p in router.participants.values()
                          if p.peer.srtp_protect is not None})
        for participant in router.participants.values():
            for consumer in participant.consumers.values():
                forwarded += consumer.packets
                octets += consumer.octets
                retransmitted += consumer.retransmissions
            for producer in participant.producers.values():
                received += producer.packets
        return {"forwarded_packets": forwarded, "forwarded_bytes": octets,
                "retransmitted_packets": retransmitted, "received_packets": received,
                "participants": len(router.participants),
                "paths": {"fanout": "python" if consumer_module.native_fanout is None
                          else "native",
                          "srtp_protect": protect}}


class RelayMode:
    """aiortc's own pipeline: decode the publisher once, encode once per subscriber."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection
        from aiortc.contrib.media import MediaRelay

        from mediaserver.aiortc_adapter import use_host_addresses

        use_host_addresses(["127.0.0.1"])
        self._pc_factory = lambda: RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.relay = MediaRelay()
        self.tracks: dict[str, Any] = {}
        self.have_tracks = asyncio.Event()
        self.pcs: dict[str, Any] = {}
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for pc in list(self.pcs.values()):
            await pc.close()

    async def offer(self, participant_id: str, sdp: str) -> str:
        from aiortc import RTCSessionDescription

        pc = self._pc_factory()
        self.pcs[participant_id] = pc
        if participant_id == PUBLISHER:
            @pc.on("track")
            def on_track(track: Any) -> None:
                self.tracks[track.kind] = track
                if len(self.tracks) == 2:
                    self.have_tracks.set()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        else:
            await asyncio.wait_for(self.have_tracks.wait(), 30)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for kind in ("audio", "video"):
                pc.addTrack(self.relay.subscribe(self.tracks[kind], buffered=False))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def answer(self, participant_id: str, sdp: str) -> None:
        raise web.HTTPBadRequest(text="relay mode never sends offers")

    async def stats(self) -> dict[str, Any]:
        forwarded = octets = 0
        for participant_id, pc in list(self.pcs.items()):
            if participant_id == PUBLISHER:
                continue
            for sender in pc.getSenders():
                report = await sender.getStats()
                for stat in report.values():
                    if stat.type == "outbound-rtp":
                        forwarded += stat.packetsSent
                        octets += stat.bytesSent
        return {"forwarded_packets": forwarded, "forwarded_bytes": octets,
                "retransmitted_packets": 0, "received_packets": None,
                "participants": len(self.pcs),
                "paths": {"fanout": "aiortc MediaRelay (encode per receiver)",
                          "srtp_protect": ["libsrtp"]}}


def make_app(mode: SfuMode | RelayMode) -> web.Application:
    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        sdp = await mode.offer(body["participant_id"], body["sdp"])
        return web.json_response({"sdp": sdp})

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        await mode.answer(body["participant_id"], body["sdp"])
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(await mode.stats())

    async def events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        mode.listeners.add(queue)

        async def pump() -> None:
            while True:
                await ws.send_json(await queue.get())

        task = asyncio.create_task(pump())
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            mode.listeners.discard(queue)
            task.cancel()
        return ws

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.add_routes([web.post("/offer", offer), web.post("/answer", answer),
                    web.get("/stats", stats), web.get("/events", events)])
    return app


async def serve(mode_name: str) -> None:
    mode: SfuMode | RelayMode = SfuMode() if mode_name == "sfu" else RelayMode()
    await mode.start()
    runner = web.AppRunner(make_app(mode), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The benchmark closes our stdin when it goes away, however it ends.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.create_task(reader.read())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({eof, waiter}, return_when=asyncio.FIRST_COMPLETED)
    eof.cancel()
    waiter.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(mode.stop(), 10)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("sfu", "relay"), default="sfu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(args.mode))
    else:
        uvloop.run(serve(args.mode))


if __name__ == "__main__":
    main()
