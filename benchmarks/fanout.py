"""SFU fan-out benchmark: one publisher, N subscribers, server CPU per forwarded packet.

Run::

    python -m benchmarks.fanout --subscribers 16 --seconds 10 --json
    python -m benchmarks.fanout --subscribers 4 --mode relay --json      # aiortc baseline
    python -m benchmarks.fanout --sweep 1,4,16,64,256 --json-out benchmarks/results/f.jsonl
    python -m benchmarks.fanout_plot benchmarks/results/f.jsonl f.png   # plot saved runs

A sweep plots itself (``--plot``, benchmarks/fanout_plot.py), targets included.

What runs:

* The server is a separate process (benchmarks/sfu_server.py: SfuBackend on uvloop, or
  aiortc's MediaRelay with ``--mode relay``) pinned to CPU 0; this load generator pins
  itself to CPU 1. Server CPU is user+sys from /proc/<pid>/stat over the window.
* The publisher replays pre-encoded media (benchmarks/fanout_media.py: VP8 640x480 30 fps
  at ~1.5 Mbps and Opus 20 ms, encoded once and cached): it costs no encoding. It sends
  raw RTP through ``mediaserver.aiortc_adapter.PeerAdapter`` (aiortc does ICE/DTLS/SRTP
  keys, the adapter protects and sends synchronously), so the benchmark itself touches no
  aiortc internals. A keyframe request (PLI/FIR) restarts the loop at its keyframe.
* N subscribers are ``PeerAdapter`` peers too: they decrypt and count packets, never
  decode, and no aiortc decoder thread is started for them. One more subscriber is a plain
  aiortc peer that decodes the video for real (``decoded_fps``), so the server forwards to
  N + 1 peers; ``subscribers`` in the result is N.

Measurement window: after every subscriber has received media and ``--warmup`` seconds
have passed, for ``--seconds``. ``forwarded_packets_per_s`` is the server's own count of
packets it sent to subscribers (RTP, RTX included), and ``server_cpu_us_per_forwarded_
packet`` divides the server process's CPU time over the window by that count.
``--windows K`` measures K consecutive windows in the same run and reports each figure's
median (the worst window's loss), with every window's CPU figure in ``window_cpu_us``.

Latency (SFU mode) is per packet, publisher send to subscriber arrival, both stamped with
this process's monotonic clock. The SFU rewrites sequence numbers and timestamps per
subscriber, but by a constant offset for the life of a consumer, and forwards the payload
byte for byte. So a subscriber learns its two offsets once, from the first packet of each
stream: the publisher keeps a map payload -> its own sequence number (every payload in
the 10 s loop is distinct, and the latest sending is the one in flight), and a ring of
(sequence -> send time, RTP timestamp). Every later packet maps back in O(1); the RTP
timestamp must agree too, otherwise the subscriber learns again. Loss (SFU mode) is,
per subscriber and stream, the packets the publisher sent inside the window that did not
arrive (tail included: results are taken after a short drain).

In relay mode the stream is re-encoded, so payloads and sequence numbers change; aiortc
keeps the publisher's RTP timestamp plus a random per-sender origin. The publisher
therefore jitters its video timestamps by a fixed pseudo-random pattern (+-30 ticks,
0.3 ms, harmless to any decoder); a subscriber finds its origin as the one shift that maps
its first frames' timestamps onto published ones, and latency is per frame (the
publisher's last packet of a frame to the subscriber's marker packet). Relay loss counts
only gaps in the relay's own output sequence numbers (frames dropped by the relay when its
encoders fall behind are not loss there; they show in ``decoded_fps``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import statistics
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPacket, RtcpPsfbPacket

from mediaserver.aiortc_adapter import PeerAdapter, RelayTrack, use_host_addresses
from mediaserver.rtp_header import parse_header

from . import machine
from .fanout_media import AUDIO_CLOCK, FPS, VIDEO_CLOCK, Media, load_media
from .fanout_plot import plot

RTCP_PSFB_FIR = 4
MASK16, MASK32 = 0xFFFF, 0xFFFFFFFF
RING = 1 << 16
SERVER_CPU, GENERATOR_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALLOWED_CPUS = os.sched_getaffinity(0)  # before pinning ourselves
_HEADER = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII").unpack_from
_rng = random.Random(20240)
TS_JITTER = [_rng.randint(-30, 30) for _ in range(997)]  # prime period
# aiortc's decode -> encode path can move a timestamp by a tick or two (rounding).
TS_SLACK = (0, -1, 1, -2, 2)


def cpu_times(pid: int | str = "self") -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


def cpu_seconds(pid: int | str = "self") -> float:
    return sum(cpu_times(pid))


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# Publisher --------------------------------------------------------------------------------
class Published:
    """What the publisher sent on one stream, indexed for the subscribers' look-ups."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.count = 0  # packets sent; packet n has extended sequence number n
        self.sent = array("d", bytes(8 * RING))  # by seq & 0xFFFF: send time
        self.ts = array("L", bytes(array("L").itemsize * RING))
        self.ext = array("q", bytes(8 * RING))
        self.by_payload: dict[bytes, int] = {}  # payload object -> seq of its latest sending
        self.frame_sent: dict[int, float] = {}  # RTP timestamp -> send time of last packet
        self.window = (1 << 62, 1 << 62)  # (after, up to) in extended seq numbers


class Publisher:
    def __init__(self, media: Media) -> None:
        self.id = "publisher"
        self.media = media
        self.negotiating = asyncio.Lock()
        self.peer = PeerAdapter()
        self.pc = self.peer.pc
        self.peer.pc.addTrack(RelayTrack("audio"))
        self.peer.pc.addTrack(RelayTrack("video"))
        self.peer.adopt_transceivers()
        self.peer.on_rtcp = self._on_rtcp
        self._ready = asyncio.Event()
        self.peer.on_connected = self.peer.on_slot_ready = self._check_ready
        self.video, self.audio = Published("video"), Published("audio")
        self.keyframe_requests = 0
        self._restart = False
        self._task: asyncio.Task[None] | None = None

    def _on_rtcp(self, data: bytes) -> None:
        with contextlib.suppress(ValueError):
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI,
                                                                         RTCP_PSFB_FIR):
                    self.keyframe_requests += 1
                    self._restart = True

    def learn_payload_types(self) -> None:
        return None

    def _check_ready(self) -> None:
        if self.peer.connected and all(s.ready for s in self.peer.send_slots):
            self._ready.set()

    def _slot(self, kind: str) -> tuple[int, int]:
        slot = next(s for s in self.peer.send_slots if s.kind == kind)
        mime = "video/vp8" if kind == "video" else "audio/opus"
        codec = next(c for c in slot.codecs if c.mimeType.lower() == mime)
        return slot.ssrc, codec.payloadType

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.peer.close()

    async def _run(self) -> None:
        await self._ready.wait()
        v_ssrc, v_pt = self._slot("video")
        a_ssrc, a_pt = self._slot("audio")
        send = self.peer.send_rtp
        pack = _HEADER.pack
        clock = time.monotonic
        video, audio = self.media.video, self.media.audio
        v_ts0, a_ts0 = random.randrange(1 << 32), random.randrange(1 << 32)
        v_seq0, a_seq0 = random.randrange(1 << 16), random.randrange(1 << 16)
        vpub, apub = self.video, self.audio
        start = clock()
        v_n = a_n = 0  # frames sent
        v_pos = 0  # position in the video loop
        while True:
            now = clock()
            while start + v_n / FPS <= now:
                if self._restart:
                    self._restart, v_pos = False, 0
                payloads = video[v_pos]
                ts = (v_ts0 + v_n * (VIDEO_CLOCK // FPS) + TS_JITTER[v_n % 997]) & MASK32
                last = len(payloads) - 1
                for i, payload in enumerate(payloads):
                    n = vpub.count
                    seq = (v_seq0 + n) & MASK16
                    send(pack(0x80, v_pt | ((i == last) << 7), seq, ts, v_ssrc) + payload)
                    t = clock()
                    j = seq
                    vpub.sent[j] = t
                    vpub.ts[j] = ts
                    vpub.ext[j] = n
                    vpub.by_payload[payload] = j
                    vpub.count = n + 1
                vpub.frame_sent[ts] = t
                if len(vpub.frame_sent) > 4 * FPS * 10:
                    for key in list(vpub.frame_sent)[:FPS * 10]:
                        del vpub.frame_sent[key]
                v_n += 1
                v_pos = (v_pos + 1) % len(video)
            while start + a_n * 0.02 <= now:
                payload = audio[a_n % len(audio)]
                ts = (a_ts0 + a_n * (AUDIO_CLOCK // 50)) & MASK32
                n = apub.count
                seq = (a_seq0 + n) & MASK16
                send(pack(0x80, a_pt | 0x80 * (a_n == 0), seq, ts, a_ssrc) + payload)
                apub.sent[seq] = clock()
                apub.ts[seq] = ts
                apub.ext[seq] = n
                apub.by_payload[payload] = seq
                apub.count = n + 1
                a_n += 1
            wake = min(start + v_n / FPS, start + a_n * 0.02)
            await asyncio.sleep(max(0.0, wake - clock()))


# Subscribers ------------------------------------------------------------------------------
class Stream:
    """One incoming stream at one subscriber."""

    __slots__ = ("ext_max", "frames", "in_window", "kind", "learned", "packets", "pub",
                 "seq_off", "snap", "ts_off")

    def __init__(self, kind: str, pub: Published) -> None:
        self.kind = kind
        self.pub = pub
        self.packets = 0
        self.in_window = 0
        self.learned = False
        self.seq_off = 0
        self.ts_off = 0
        self.ext_max = -1
        self.frames: list[tuple[int, float]] = []  # relay mode: first frames, to learn
        self.snap: tuple[int, int] = (0, 0)


class RawSubscriber:
    """A subscriber that decrypts and counts packets; nothing is decoded."""

    def __init__(self, pid: str, publisher: Publisher, relay: bool,
                 latencies: array[float]) -> None:
        self.id = pid
        self.peer = PeerAdapter()
        self.peer.pc.addTransceiver("audio", direction="recvonly")
        self.peer.pc.addTransceiver("video", direction="recvonly")
        self.peer.adopt_transceivers()
        self.peer.on_rtp = self.on_relay_rtp if relay else self.on_rtp
        self.negotiating = asyncio.Lock()
        self.publisher = publisher
        self.streams: dict[int, Stream] = {}
        self.kind_of_pt: dict[int, str] = {}
        self.latencies = latencies
        self.unmatched = 0

    @property
    def pc(self) -> RTCPeerConnection:
        return self.peer.pc

    def learn_payload_types(self) -> None:
        for slot in self.peer.recv_slots:
            for codec in self.peer.negotiated_codecs(slot.transceiver):
                self.kind_of_pt[codec.payloadType] = slot.kind

    def received(self) -> int:
        return sum(s.packets for s in self.streams.values())

    def _stream(self, ssrc: int, data: bytes) -> Stream | None:
        kind = self.kind_of_pt.get(data[1] & 0x7F)
        if kind is None:
            return None  # RTX or unknown: not counted
        stream = Stream(kind, self.publisher.video if kind == "video" else self.publisher.audio)
        self.streams[ssrc] = stream
        return stream

    def on_rtp(self, data: bytes) -> None:
        """SFU mode: map each packet back to the publisher's (see the module docstring)."""
        now = time.monotonic()
        seq, ts, ssrc = _SEQ_TS_SSRC(data, 2)
        stream = self.streams.get(ssrc) or self._stream(ssrc, data)
        if stream is None:
            return
        stream.packets += 1
        pub = stream.pub
        if stream.learned:
            i = (seq - stream.seq_off) & MASK16
            if pub.ts[i] == (ts - stream.ts_off) & MASK32:
                ext = pub.ext[i]
                after, upto = pub.window
                if after < ext <= upto:
                    stream.in_window += 1
                    self.latencies.append(now - pub.sent[i])
                return
        # First packet of the stream, or the offsets changed (consumer rebound): learn.
        header = parse_header(data)
        j = pub.by_payload.get(data[header[5]:]) if header else None
        if j is None:
            self.unmatched += 1
            return
        stream.seq_off = (seq - j) & MASK16
        stream.ts_off = (ts - pub.ts[j]) & MASK32
        stream.learned = True
        stream.packets -= 1
        self.on_rtp(data)

    def on_relay_rtp(self, data: bytes) -> None:
        """Relay mode: count, track sequence gaps, per-frame latency on video markers."""
        now = time.monotonic()
        seq, ts, ssrc = _SEQ_TS_SSRC(data, 2)
        stream = self.streams.get(ssrc) or self._stream(ssrc, data)
        if stream is None:
            return
        stream.packets += 1
        if stream.ext_max < 0:
            stream.ext_max = (1 << 20) + seq
        else:
            delta = (seq - stream.ext_max) & MASK16
            if delta < 0x8000:
                stream.ext_max += delta
        if stream.kind != "video" or not data[1] & 0x80:
            return
        frame_sent = stream.pub.frame_sent
        if stream.learned:
            sent = None
            for d in TS_SLACK:
                sent = frame_sent.get((ts - stream.ts_off + d) & MASK32)
                if sent is not None:
                    break
            if sent is None:
                self.unmatched += 1
            else:
                self.latencies.append(now - sent)
            return
        stream.frames.append((ts, now))
        if len(stream.frames) >= 5:
            first = stream.frames[0][0]
            matches = [p for p, t in frame_sent.items() if t <= stream.frames[0][1]
                       and all(any(((o - first + p + d) & MASK32) in frame_sent
                                   for d in TS_SLACK) for o, _ in stream.frames[1:])]
            if len(matches) == 1:
                stream.ts_off = (first - matches[0]) & MASK32
                stream.learned = True
            stream.frames.clear()

    async def close(self) -> None:
        await self.peer.close()


class DecodingSubscriber:
    """A plain aiortc peer that decodes what it receives: proof the stream is valid."""

    def __init__(self, pid: str) -> None:
        self.id = pid
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[],
                                                     bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        self.negotiating = asyncio.Lock()
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self.tasks.append(asyncio.ensure_future(self._drain(track)))

    async def _drain(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                self.frames += 1
                self.size = (frame.width, frame.height)

    def received(self) -> int:
        return self.frames

    def learn_payload_types(self) -> None:
        return None

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


# The run ----------------------------------------------------------------------------------
class Server:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sfu_server", "--mode", self.mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        pin(self.proc.pid, SERVER_CPU)

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the server exits on EOF
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pin(pid: int, cpu: int) -> None:
    """Pin a process to one CPU when the machine has two (no pinning on a 1-CPU box)."""
    if len(ALLOWED_CPUS) >= 2:
        os.sched_setaffinity(pid, {sorted(ALLOWED_CPUS)[cpu]})


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet or not sys.stderr.isatty()
        self.last = ""

    def show(self, text: str) -> None:
        if self.quiet:
            return
        sys.stderr.write("\r" + text.ljust(len(self.last)))
        sys.stderr.flush()
        self.last = text

    def done(self) -> None:
        if not self.quiet and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def combine(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from consecutive windows of one run: the median of each figure.

    This machine is shared and its CPU accounting is noisy from one window to the next, so
    one window can land on a neighbour's burst; the median of several, with the spread kept
    in ``window_cpu_us``, is the figure to quote. Loss is the worst window's: a single lossy
    window is a finding, not noise. Counts are summed.
    """
    result = dict(windows[-1])
    if len(windows) == 1:
        return result
    for key, value in result.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        values = [w[key] for w in windows if w[key] is not None]
        if key == "loss_ratio":
            result[key] = max(values)
        elif key in ("retransmitted_packets", "unmatched_packets", "latency_samples"):
            result[key] = sum(values)
        elif key not in ("keyframe_requests", "generator_cpu_total_s", "subscribers",
                         "decoding_subscribers", "join_seconds"):
            result[key] = round(statistics.median(values), 3)
    result["windows"] = len(windows)
    result["window_cpu_us"] = [w["server_cpu_us_per_forwarded_packet"] for w in windows]
    return result


async def run(subscribers: int, seconds: float, mode: str, *, warmup: float = 2.0,
              windows: int = 1, join_concurrency: int = 1,
              quiet: bool = False) -> dict[str, Any]:
    relay = mode == "relay"
    media = load_media()
    loop = asyncio.get_running_loop()

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # aiortc closes a failed connection from a task of its own; when that races our
        # close at shutdown, one of the two hits an already-resolved future. Harmless.
        if not isinstance(context.get("exception"), asyncio.InvalidStateError):
            loop.default_exception_handler(context)

    loop.set_exception_handler(on_error)
    logging.getLogger("asyncio").addFilter(
        lambda r: not (r.exc_info and isinstance(r.exc_info[1], asyncio.InvalidStateError)))
    use_host_addresses(["127.0.0.1"])
    server = Server(mode)
    server.start()
    progress = Progress(quiet)
    latencies: array[float] = array("d")
    publisher = Publisher(media)
    peers: dict[str, Any] = {"publisher": publisher}
    raw: list[RawSubscriber] = []
    decoder = DecodingSubscriber("decoder")
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
    events: asyncio.Task[None] | None = None
    gen_cpu0 = cpu_seconds()
    try:
        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(server.url + path, json=body) as response:
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status} {await response.text()}")
                return await response.json()  # type: ignore[no-any-return]

        async def on_server_offer(message: dict[str, Any]) -> None:
            peer = peers[message["participant_id"]]
            async with peer.negotiating:
                await peer.pc.setRemoteDescription(
                    RTCSessionDescription(sdp=message["sdp"], type="offer"))
                await peer.pc.setLocalDescription(await peer.pc.createAnswer())
                peer.learn_payload_types()
                await post("/answer", {"participant_id": peer.id,
                                       "sdp": peer.pc.localDescription.sdp})

        answering: set[asyncio.Future[None]] = set()

        async def listen() -> None:
            async with session.ws_connect(server.url + "/events") as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        task = asyncio.ensure_future(on_server_offer(json.loads(msg.data)))
                        answering.add(task)
                        task.add_done_callback(answering.discard)

        events = asyncio.ensure_future(listen())

        async def join(peer: Any) -> None:
            peers[peer.id] = peer
            async with peer.negotiating:
                await peer.pc.setLocalDescription(await peer.pc.createOffer())
                answer = await post("/offer", {"participant_id": peer.id,
                                               "sdp": peer.pc.localDescription.sdp})
                await peer.pc.setRemoteDescription(
                    RTCSessionDescription(sdp=answer["sdp"], type="answer"))
                peer.learn_payload_types()

        await join(publisher)
        publisher.start()
        join_started = time.monotonic()
        await join(decoder)
        for _ in range(500):
            if decoder.frames:
                break
            await asyncio.sleep(0.01)
        pending = [RawSubscriber(f"sub{i:04d}", publisher, relay, latencies)
                   for i in range(subscribers)]
        raw.extend(pending)
        semaphore = asyncio.Semaphore(join_concurrency)

        async def limited(peer: RawSubscriber) -> None:
            async with semaphore:
                await join(peer)
                # Joins are serialised up to "media flows" on purpose: the router wires
                # (and renegotiates) every live participant on each join event, including
                # one whose own first offer is still being answered; concurrent joins break
                # that answer (see the report on Router.reconcile).
                for _ in range(200):
                    if peer.received():
                        break
                    await asyncio.sleep(0.01)

        joining = asyncio.ensure_future(asyncio.gather(*(limited(p) for p in pending)))
        deadline = time.monotonic() + 60 + subscribers * 1.0
        while True:
            receiving = sum(1 for p in raw if p.received() > 0)
            if joining.done():
                joining.result()
            progress.show(f"[{mode} N={subscribers}] joining: {receiving}/{subscribers} "
                          f"receiving, decoder frames {decoder.frames}, publisher sent "
                          f"{publisher.video.count + publisher.audio.count} packets")
            if receiving == subscribers and decoder.frames > 0 and joining.done():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {receiving}/{subscribers} subscribers received "
                                   f"media; decoder frames {decoder.frames}")
            await asyncio.sleep(0.2)
        join_seconds = time.monotonic() - join_started
        await asyncio.sleep(warmup)

        # The window.
        async def stats() -> dict[str, Any]:
            async with session.get(server.url + "/stats") as response:
                return await response.json()  # type: ignore[no-any-return]

        async def measure(index: int) -> dict[str, Any]:
            before = await stats()
            for pub in (publisher.video, publisher.audio):
                pub.window = (pub.count - 1, 1 << 62)
            for p in raw:
                for s in p.streams.values():
                    s.snap = (s.packets, s.ext_max)
                    s.in_window = 0
            unmatched0 = sum(p.unmatched for p in raw)
            label = f"[{mode} N={subscribers}" + (f" {index + 1}/{windows}]" if windows > 1
                                                   else "]")
            t0, cpu0, gcpu0 = time.monotonic(), server.cpu(), cpu_seconds()
            frames0 = decoder.frames
            sys0 = cpu_times(server.proc.pid)[1] if server.proc else 0.0
            sent0 = publisher.video.count + publisher.audio.count
            rx0 = sum(p.received() for p in raw)
            latencies_start = len(latencies)
            while (elapsed := time.monotonic() - t0) < seconds:
                await asyncio.sleep(min(1.0, seconds - elapsed))
                elapsed = time.monotonic() - t0
                rx = sum(p.received() for p in raw) - rx0
                cpu = (server.cpu() - cpu0) / max(elapsed, 1e-6)
                progress.show(f"{label} {elapsed:4.1f}/{seconds:g} s: "
                              f"{rx / elapsed:8.0f} pkt/s received, server CPU {cpu:5.1%}, "
                              f"decoded {(decoder.frames - frames0) / elapsed:4.1f} fps")
            after = await stats()
            latencies_end = len(latencies)
            t1, cpu1, gcpu1 = time.monotonic(), server.cpu(), cpu_seconds()
            frames1 = decoder.frames
            sys1 = cpu_times(server.proc.pid)[1] if server.proc else 0.0
            window = t1 - t0
            rx1 = sum(p.received() for p in raw)
            sent1 = publisher.video.count + publisher.audio.count
            for pub in (publisher.video, publisher.audio):
                pub.window = (pub.window[0], pub.count - 1)
            for p in raw:
                for s in p.streams.values():
                    s.snap = (s.packets - s.snap[0], s.ext_max - s.snap[1])
            await asyncio.sleep(0.5)  # drain: packets sent inside the window still arriving
            progress.done()

            if relay:
                got = sum(s.snap[0] for p in raw for s in p.streams.values())
                expected = sum(s.snap[1] for p in raw for s in p.streams.values())
                window_latency = latencies[latencies_start:latencies_end]
            else:
                got = sum(s.in_window for p in raw for s in p.streams.values())
                expected = sum((pub.window[1] - pub.window[0]) * len(raw)
                               for pub in (publisher.video, publisher.audio))
                window_latency = latencies[latencies_start:]
            ordered = sorted(window_latency)
            forwarded = after["forwarded_packets"] - before["forwarded_packets"]
            server_cpu = cpu1 - cpu0
            p50, p99 = percentile(ordered, 0.5), percentile(ordered, 0.99)
            return {
                "mode": mode,
                "subscribers": subscribers,
                "decoding_subscribers": 1,
                "seconds": round(window, 2),
                "forwarded_packets_per_s": round(forwarded / window, 1),
                "forwarded_mbps": round((after["forwarded_bytes"] - before["forwarded_bytes"])
                                        * 8 / window / 1e6, 2),
                "server_cpu_us_per_forwarded_packet":
                    round(server_cpu / forwarded * 1e6, 2) if forwarded else None,
                "server_cpu_percent": round(100 * server_cpu / window, 1),
                # Kernel time: UDP sendto on loopback also runs the receiver's delivery path.
                "server_sys_percent": round(100 * (sys1 - sys0) / window, 1),
                "latency_ms_p50": round(p50 * 1000, 3) if p50 is not None else None,
                "latency_ms_p99": round(p99 * 1000, 3) if p99 is not None else None,
                "latency_samples": len(ordered),
                "loss_ratio": round(max(0.0, 1 - got / expected), 5) if expected else None,
                "decoded_fps": round((frames1 - frames0) / window, 1),
                "decoded_size": list(decoder.size) if decoder.size else None,
                "received_packets_per_s": round((rx1 - rx0) / window, 1),
                "publisher_packets_per_s": round((sent1 - sent0) / window, 1),
                "publisher_video_mbps": round(media.video_bps / 1e6, 2),
                "retransmitted_packets": after["retransmitted_packets"]
                - before["retransmitted_packets"],
                "keyframe_requests": publisher.keyframe_requests,
                "unmatched_packets": sum(p.unmatched for p in raw) - unmatched0,
                "generator_cpu_percent": round(100 * (gcpu1 - gcpu0) / window, 1),
                "join_seconds": round(join_seconds, 1),
                "cpus": {"server": sorted(os.sched_getaffinity(server.proc.pid))
                         if server.proc else None,
                         "generator": sorted(os.sched_getaffinity(0))},
                "generator_cpu_total_s": round(cpu_seconds() - gen_cpu0, 1),
                # Which code the server forwarded with (a missing C extension doubles the
                # CPU per packet) and on what machine: so two results can be compared.
                "server_paths": after.get("paths"),
                "machine": machine.describe(),
            }

        return combine([await measure(index) for index in range(windows)])
    finally:
        progress.done()
        if events is not None:
            events.cancel()
        for peer in [*raw, decoder]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(publisher.stop(), 5)
        await session.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", choices=("sfu", "relay"), default="sfu")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=1,
                        help="consecutive measurement windows of --seconds; the result is "
                             "their median (window_cpu_us lists each)")
    parser.add_argument("--json", action="store_true", help="print one JSON line per run")
    parser.add_argument("--json-out", type=Path, help="append each result as a JSON line")
    parser.add_argument("--sweep", help="comma-separated subscriber counts, e.g. 1,4,16,64")
    parser.add_argument("--plot", type=Path, help="PNG for --sweep (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    parser.add_argument("--join-concurrency", type=int, default=1,
                        help="subscribers joining at once (>1 races in Router.reconcile)")
    args = parser.parse_args()
    counts = [int(n) for n in args.sweep.split(",")] if args.sweep else [args.subscribers]

    pin(0, GENERATOR_CPU)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    results = []
    for n in counts:
        result = runner(run(n, args.seconds, args.mode, warmup=args.warmup,
                            windows=args.windows, quiet=args.quiet,
                            join_concurrency=args.join_concurrency))
        results.append(result)
        line = json.dumps(result)
        if args.json:
            print(line, flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in result.items()
                           if k not in ("cpus", "machine")), flush=True)
        if args.json_out:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            with args.json_out.open("a") as f:
                f.write(line + "\n")
    if args.sweep and len(results) > 1:
        plot(results, args.plot or Path(__file__).resolve().parent / "results"
             / f"fanout_{args.mode}.png")


if __name__ == "__main__":
    main()
