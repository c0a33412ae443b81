"""A Router is one media session (one call): who is in it and who receives whom.

`reconcile` is the single place that wires consumers to producers. Every change (a
participant joins or leaves, a stream appears, a send slot becomes ready) calls it, and it
converges: each participant consumes every other participant's streams, on a free send slot
or on a new one added by renegotiation. Keeping one idempotent function avoids a web of
event handlers that drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from signaling.media import MediaSessionSpec

from . import h264
from .adaptation import Adaptation
from .aiortc_adapter import PeerAdapter, server_h264_fmtps
from .bandwidth import StoreBudget
from .connectivity import ClientView, ConnectionOutcomes
from .feedback_clock import FeedbackClock
from .participant import NegotiationError, Participant
from .producer import Producer

if TYPE_CHECKING:
    from .tryon.service import TryOnService
    from .tryon.wiring import SessionTryOn

log = logging.getLogger(__name__)

# The video codec of a session: the first of these every participant offers. VP8 first:
# Chromium prefers it and it allows temporal layers; H.264 for Safari and store iPads.
VIDEO_PREFERENCE = ("video/vp8", "video/h264")
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


def offered_h264_fmtps(sdp: str) -> list[str]:
    """The fmtp lines of the H.264 payload types in an SDP, in offer order."""
    h264_pts: set[str] = set()
    fmtps: dict[str, str] = {}
    for line in sdp.splitlines():
        if line.startswith("a=rtpmap:"):
            pt, _, rest = line[9:].partition(" ")
            if rest.lower().startswith("h264/"):
                h264_pts.add(pt)
        elif line.startswith("a=fmtp:"):
            pt, _, params = line[7:].partition(" ")
            fmtps[pt] = params
    return [fmtps.get(pt, "") for pt in sorted(h264_pts, key=int)]


def offered_video_codecs(sdp: str) -> set[str]:
    """Video codec names in an offer's video m-sections, e.g. {"video/vp8", "video/h264"}."""
    names: set[str] = set()
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            parts = line.split(" ", 1)
            if len(parts) == 2:
                names.add("video/" + parts[1].split("/", 1)[0].lower())
    return names


def stream_groups(source: Participant) -> list[list[Producer]]:
    """A participant's streams, one group per kind: its simulcast encodings from the lowest
    resolution up (a single producer without simulcast)."""
    groups: dict[str, list[Producer]] = {}
    for producer in source.producers.values():
        groups.setdefault(producer.kind, []).append(producer)
    return [sorted(group, key=lambda p: p.spatial) for group in groups.values()]


class Router:
    def __init__(self, spec: MediaSessionSpec, notify: Callable[[str, dict[str, Any]], None],
                 *, video_floor_bps: float = 100_000,
                 store_share: Callable[[str | None], StoreBudget] | None = None,
                 retire: Callable[[Participant], None] = lambda _p: None,
                 tryon: TryOnService | None = None, clock: FeedbackClock | None = None,
                 outcomes: ConnectionOutcomes | None = None,
                 public_addresses: list[str] | None = None) -> None:
        self.retire = retire  # folds a departing participant's counters into the totals
        self.spec = spec
        # The backend's; a router on its own (tests) gets one whose work does nothing.
        self.clock = clock or FeedbackClock(lambda _now: None)
        self.video_floor_bps = video_floor_bps
        # The session's share of its store's capacity (None: unlimited).
        self.store_share = store_share or (lambda _store: StoreBudget())
        self.caps: dict[int, float] = {}  # producer SSRC -> last REMB cap sent
        self._notify = notify
        # Connection attempts by outcome and candidate type (the backend's, for /metrics).
        self.outcomes = outcomes if outcomes is not None else ConnectionOutcomes()
        # Announced beside each host candidate for a server behind 1:1 NAT.
        self.public_addresses = public_addresses or []
        self.participants: dict[str, Participant] = {}
        self.video_mime: str | None = None
        # With H.264, the profile and packetization mode every participant must share.
        self.h264_fmtp: str | None = None
        self.created_at = time.time()
        self.fallbacks = 0
        self.adaptation = Adaptation(self)
        # Simulcast labels of participants whose connection ended, for their comeback.
        self._known_rids: dict[str, dict[int, str]] = {}
        # Participants whose last connection attempt failed (the others were told).
        self._unreachable: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Virtual try-on, when this session's store offers it (None: pure forwarding).
        self.tryon: SessionTryOn | None = None
        if tryon is not None and spec.kind.value == "video" and tryon.available_for(
                spec.store_id):
            from .tryon.wiring import SessionTryOn
            self.tryon = SessionTryOn(tryon, self.reconcile)

    def notify(self, participant_id: str, message: dict[str, Any]) -> None:
        self._notify(participant_id, {**message, "session_id": self.spec.session_id,
                                      "call_id": self.spec.call_id,
                                      "participant_id": participant_id})

    async def offer(self, participant_id: str, sdp: str) -> str:
        """A participant's offer: first join, renegotiation, ICE restart or rejoin."""
        current = self.participants.get(participant_id)
        if current is not None and not current.closed and current.peer.connected \
                and not self._ice_restart(current, sdp):
            return await current.handle_offer(sdp)
        self._choose_video_codec(sdp)
        if current is not None:
            await self._drop(current)
        known_rids = self._known_rids.pop(participant_id, {})
        participant = Participant(participant_id, self, PeerAdapter())
        # After an ICE restart a browser keeps its SSRCs but no longer labels them with
        # their rid (it stops once they were acknowledged): hand the labels over.
        participant.known_rids = known_rids
        self.participants[participant_id] = participant
        try:
            return await participant.handle_offer(sdp)
        except Exception:
            await self._drop(participant)
            raise

    async def answer(self, participant_id: str, sdp: str) -> None:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise NegotiationError("not in this media session: send an offer first")
        await participant.handle_answer(sdp)

    async def add_candidate(self, participant_id: str, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None, ufrag: str | None) -> None:
        """A trickled candidate for the participant's current connection. One from an
        earlier ICE generation (its offer was replaced since) is dropped without error: the
        browser sends them in good faith while its restart is under way."""
        participant = self.participants.get(participant_id)
        if participant is None or participant.closed:
            raise NegotiationError("no media connection is being set up: send an offer first")
        if ufrag is not None and ufrag != participant.peer.remote_ufrag():
            return
        try:
            await participant.peer.add_remote_candidate(candidate, sdp_mid, sdp_mline_index)
        except ValueError as exc:
            raise NegotiationError(str(exc)) from None

    def connection_report(self, participant_id: str, view: ClientView) -> None:
        participant = self.participants.get(participant_id)
        if participant is None:
            return
        participant.connection.report(view)
        if view.state == "failed" and not participant.closed:
            self._connection_failed(participant)
            self.participant_lost(participant)  # the client gave up: free its transport

    def _connection_failed(self, participant: Participant) -> None:
        record = participant.connection
        if record.failed(record.reason(participant.peer.ice_state())):
            role = participant.id.split(":", 1)[0]
            log.warning("media session %s: a %s's media connection failed: %s",
                        self.spec.session_id, role, record.failure)
            self.outcomes.count(record)
            # The others would otherwise wait for a picture that is not coming.
            self._unreachable.add(participant.id)
            self._tell_others(participant.id, "peer_connection_failed",
                              "could not connect: their network blocks calls")

    def participant_connected(self, participant: Participant) -> None:
        if participant.id in self._unreachable:
            self._unreachable.discard(participant.id)
            self._tell_others(participant.id, "peer_connected", "connected")
        self.reconcile()

    def _tell_others(self, participant_id: str, code: str, message: str) -> None:
        for other in self.participants:
            if other != participant_id:
                self.notify(other, {"type": "media.notice", "code": code,
                                    "from": participant_id, "message": message})

    def _watch_connections(self, now: float) -> None:
        """Once a second: give up on attempts that never connected, count what is settled."""
        for participant in list(self.participants.values()):
            record = participant.connection
            if record.overdue(now):
                self._connection_failed(participant)
                self.participant_lost(participant)
            if record.countable(now):
                self.outcomes.count(record)

    @staticmethod
    def _ice_restart(participant: Participant, sdp: str) -> bool:
        remote = participant.peer.pc.remoteDescription
        old = _UFRAG.search(remote.sdp) if remote else None
        new = _UFRAG.search(sdp)
        return bool(old and new and old.group(1) != new.group(1))

    def _choose_video_codec(self, sdp: str) -> None:
        offered = offered_video_codecs(sdp)
        if not offered:
            return  # audio-only participant
        if self.video_mime in offered:
            if self.video_mime == "video/h264" and self.h264_fmtp is not None and not any(
                    h264.same_profile(f, self.h264_fmtp) for f in offered_h264_fmtps(sdp)):
                raise NegotiationError(
                    f"this call uses H.264 {h264.h264_profile(self.h264_fmtp)} with "
                    f"packetization-mode {h264.packetization_mode(self.h264_fmtp)}, "
                    "which the offer lacks")
            return
        others = [offered_video_codecs(p.peer.pc.remoteDescription.sdp)
                  for p in self.participants.values() if p.peer.pc.remoteDescription]
        for mime in VIDEO_PREFERENCE:
            if mime in offered and all(mime in o for o in others if o):
                if self.video_mime is not None:
                    raise NegotiationError(
                        f"this call already uses {self.video_mime}, which the offer lacks")
                self.video_mime = mime
                if mime == "video/h264":
                    self.h264_fmtp = self._pick_h264_fmtp(offered_h264_fmtps(sdp))
                return
        raise NegotiationError("no video codec in common (need VP8 or H.264)")

    @staticmethod
    def _pick_h264_fmtp(fmtps: list[str]) -> str:
        """The first offered H.264 variant the server can negotiate (aiortc's profiles)."""
        for fmtp in fmtps:
            if any(h264.same_profile(fmtp, ours) for ours in server_h264_fmtps()):
                return fmtp
        raise NegotiationError("no H.264 profile in common (need constrained baseline "
                               "or baseline, packetization-mode 1)")

    # Wiring -------------------------------------------------------------------------------
    def reconcile(self) -> None:
        now = time.monotonic()
        live = [p for p in self.participants.values() if not p.closed]
        tryon = self.tryon
        if tryon is not None:
            tryon.follow_sources(self.participants, now)
        for receiver in live:
            # Only wire a receiver between negotiations: its transceivers are half-made while
            # an offer is being answered. Its own connect or answer calls reconcile again.
            if not receiver.peer.connected or receiver.peer.pc.signalingState != "stable":
                continue
            renegotiate = False
            for source in live:
                if source is receiver:
                    continue
                for group in stream_groups(source):
                    producer = group[-1]  # the top encoding by default: adaptation chooses
                    if tryon is not None:  # its try-on stream instead, while one is live
                        forwarded = tryon.forwarded(producer)
                        if forwarded is not producer:
                            producer, group = forwarded, [forwarded]
                    key = (source.id, producer.kind)
                    consumer = receiver.consumers.get(key)
                    if consumer is None:
                        slot = receiver.slot_of.get(key) or receiver.free_send_slot(producer.kind)
                        if slot is None:
                            slot = receiver.peer.add_send_slot(producer.kind)
                            renegotiate = True
                        receiver.slot_of[key] = slot
                        if not slot.ready:
                            continue
                        consumer = receiver.attach(source.id, producer.kind, slot, producer)
                        if consumer is None:
                            log.warning("%s cannot receive %s", receiver.id, producer.mime_type)
                            continue
                    if consumer.producer not in group:
                        consumer.bind(producer, now)
            if tryon is not None and tryon.wants_mirror(receiver.id):
                renegotiate |= tryon.wire_mirror(receiver, now)
            if renegotiate:
                self._spawn(receiver.renegotiate())
            self._tell_sources(receiver)

    def _tell_sources(self, receiver: Participant) -> None:
        """Tell a client which of its m-sections carries whom, when that changed.

        With a colleague in the call a client receives several video streams; only the
        server knows which participant each one comes from (a slot keeps its source across
        a rejoin, so the mapping only grows or moves with renegotiation).
        """
        sources = {slot.mid: key for key, slot in receiver.slot_of.items()
                   if slot.mid is not None and slot.ready}
        if sources == receiver.sources_told:
            return
        receiver.sources_told = sources
        self.notify(receiver.id, {"type": "media.sources", "sources": [
            {"mid": mid, "participant_id": source_id, "kind": kind}
            for mid, (source_id, kind) in sorted(sources.items())]})

    def producer_added(self, participant: Participant, producer: Producer,
                       replaced: list[Producer]) -> None:
        now = time.monotonic()
        for old in replaced:
            for consumer in list(old.consumers):
                consumer.bind(None, now)
        self.reconcile()

    def participant_lost(self, participant: Participant) -> None:
        """The participant's connection failed or closed: its streams stop for the others."""
        if participant.connection.outcome is None and not participant.closed:
            self._connection_failed(participant)  # ICE failed before media ever flowed
        if self.participants.get(participant.id) is participant:
            self._spawn(self._drop(participant))

    async def _drop(self, participant: Participant) -> None:
        if participant.closed:
            return
        self._known_rids[participant.id] = participant.simulcast_ssrcs()
        self.retire(participant)
        now = time.monotonic()
        for producer in participant.producers.values():
            for consumer in list(producer.consumers):
                consumer.bind(None, now)  # keeps its identity for a rejoin
        participant.producers.clear()
        await participant.close()

    async def leave(self, participant_id: str) -> None:
        if self.tryon is not None:
            self.tryon.leave(participant_id)
        participant = self.participants.pop(participant_id, None)
        if participant is not None:
            if participant.connection.outcome == "connected" and not participant.connection.counted:
                self.outcomes.count(participant.connection)
            await self._drop(participant)

    def forward_sender_report(self, producer: Producer) -> None:
        """Rewrite the publisher's NTP/RTP pair into each consumer's timestamp space, so the
        browser keeps this publisher's audio and video in sync."""
        # A try-on stream carries its camera's timestamps, so the same report maps onto it.
        derived = self.tryon.forwarded(producer) if self.tryon is not None else producer
        for receiver in self.participants.values():
            for consumer in receiver.consumers.values():
                if (consumer.producer is producer or consumer.producer is derived) \
                        and consumer.last_in_seq >= 0:
                    report = RtcpSrPacket(ssrc=consumer.ssrc, sender_info=RtcpSenderInfo(
                        ntp_timestamp=producer.sr_ntp,
                        rtp_timestamp=consumer.out_timestamp_for(producer.sr_rtp),
                        packet_count=consumer.packets & 0xFFFFFFFF,
                        octet_count=consumer.octets & 0xFFFFFFFF))
                    receiver.peer.send_rtcp(bytes(report))

    def tick(self, now: float, reports: bool) -> None:
        """Feedback every 50 ms (`reports`: the once-a-second one). It loops over every
        participant and stream 20 times a second, so what only concerns publishers is
        skipped for everyone else without a call."""
        self.adaptation.tick(now, reports)
        if reports:
            self._watch_connections(now)
        for participant in self.participants.values():
            if reports and participant.peer.connected:
                participant.peer.follow_nominated_pair()
            if participant.producers and participant.peer.connected:
                participant.send_feedback(now, reports=reports)
            for consumer in participant.consumers.values():
                # A throttled or lost keyframe request must not leave a receiver frozen:
                # ask again (want_keyframe keeps it to one per 500 ms per publisher).
                if consumer.last_in_seq < 0 and consumer.producer is not None:
                    consumer.producer.want_keyframe(now)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("media session %s: %r", self.spec.session_id, task.exception())

    async def close(self) -> None:
        if self.tryon is not None:
            self.tryon.close()
        for participant in list(self.participants.values()):
            await self._drop(participant)
        self.participants.clear()
        if self._tasks:  # drops and renegotiations in flight: let them finish, don't cancel
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()

    def describe(self) -> dict[str, Any]:
        return {"session_id": self.spec.session_id, "call_id": self.spec.call_id,
                "conversation_id": self.spec.conversation_id, "kind": self.spec.kind.value,
                "store_id": self.spec.store_id, "video_codec": self.video_mime,
                "participants": [p.describe() for p in self.participants.values()],
                "tryon": self.tryon.describe() if self.tryon is not None else []}
