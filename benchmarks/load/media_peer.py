"""One participant's WebRTC connection to the SFU: replays pre-encoded media, counts and
times what it receives (rtp_probe.py) and negotiates through the signalling WebSocket,
like tests/media_peers.py but without any encoding or (except for a sample) decoding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from .media_source import MediaLoop, ReplayTrack, audio_track, video_track, watch_keyframe_requests
from .receiver_stats import SendLogLike
from .rtp_probe import ReceiverProbe
from .stats import LogHistogram


def ice_servers(join: dict[str, Any]) -> list[RTCIceServer]:
    """The ICE servers from call.started's join; an empty list keeps aiortc off its default
    public STUN server (see the field notes)."""
    return [RTCIceServer(urls=s["urls"], username=s.get("username"),
                         credential=s.get("credential"))
            for s in join.get("ice_servers") or []]


class MediaPeer(Protocol):
    """What the scenario needs from a participant's media connection; LoadPeer (aiortc)
    and raw_peer.RawPeer (packet level) both provide it."""

    name: str
    negotiating: asyncio.Lock
    closed: bool
    nacks_received: int

    @property
    def logs(self) -> list[SendLogLike]: ...

    async def offer(self) -> str: ...

    async def accept_answer(self, sdp: str) -> None: ...

    async def answer_offer(self, sdp: str) -> str: ...

    def first_packet_at(self, kind: str) -> float | None: ...

    def first_keyframe_at(self) -> float | None: ...

    def sent_frames(self) -> dict[str, int]: ...

    def keyframe_requests(self) -> int: ...

    def generator_lag_s(self) -> float: ...

    def received_summaries(self) -> list[dict[str, Any]]: ...

    async def close(self, now: float) -> None: ...


class LoadPeer:
    """A full aiortc RTCPeerConnection (aiortc packetizes, sends RTCP, answers NACKs):
    the reference path, and the one the decoding sample uses."""

    def __init__(self, name: str, loop: MediaLoop, *, video: bool,
                 remote_logs: Callable[[], Sequence[SendLogLike]],
                 latency: dict[str, LogHistogram],
                 decode: bool = False, servers: list[RTCIceServer] | None = None) -> None:
        self.name = name
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=servers or [], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.negotiating = asyncio.Lock()
        self.remote_logs = remote_logs
        self.latency = latency
        self.decode = decode
        self.tracks: list[ReplayTrack] = [audio_track(loop)]
        if video:
            self.tracks.append(video_track(loop))
        for track in self.tracks:
            sender = self.pc.addTrack(track)
            if track.kind == "video":
                watch_keyframe_requests(sender, track)
        self.probes: list[ReceiverProbe] = []
        self._probed: set[int] = set()
        self._probe_new_receivers()
        self.closed = False

    @property
    def logs(self) -> list[SendLogLike]:
        return [t.log for t in self.tracks]

    def video_log(self) -> list[SendLogLike]:
        return [t.log for t in self.tracks if t.kind == "video"]

    def audio_log(self) -> list[SendLogLike]:
        return [t.log for t in self.tracks if t.kind == "audio"]

    def _probe_new_receivers(self) -> None:
        """Hook every receiver not hooked yet; called before aiortc can start any of them
        (transceivers appear at addTrack and at setRemoteDescription)."""
        for probe in self.probes:
            probe.start_decoding()
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if id(receiver) in self._probed:
                continue
            self._probed.add(id(receiver))
            kind = transceiver.kind
            self.probes.append(ReceiverProbe(
                receiver, kind, (lambda k=kind: self._remote(k)), self.latency[kind],
                decode=self.decode and kind == "video"))
            self.probes[-1].start_decoding()

    def _remote(self, kind: str) -> Sequence[SendLogLike]:
        return [log for log in self.remote_logs() if log.kind == kind]

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._probe_new_receivers()
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self._probe_new_receivers()

    async def answer_offer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._probe_new_receivers()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def first_packet_at(self, kind: str) -> float | None:
        times = [p.first_at for p in self.probes if p.kind == kind and p.first_at is not None]
        return min(times) if times else None

    def first_keyframe_at(self) -> float | None:
        times = [p.keyframe_at for p in self.probes
                 if p.kind == "video" and p.keyframe_at is not None]
        return min(times) if times else None

    def sent_frames(self) -> dict[str, int]:
        return {t.kind: t.log.frames for t in self.tracks}

    def generator_lag_s(self) -> float:
        return max((t.late_s for t in self.tracks), default=0.0)

    def keyframe_requests(self) -> int:
        return sum(t.keyframe_requests for t in self.tracks)

    def received_summaries(self) -> list[dict[str, Any]]:
        return [p.summary() for p in self.probes if p.streams or p.decoded_frames]

    # aiortc answers NACKs itself and does not tell: not counted on this path.
    nacks_received = 0

    async def close(self, now: float) -> None:
        if self.closed:
            return
        self.closed = True
        for probe in self.probes:
            probe.end(now)
        for track in self.tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)
