"""The media session interface between signalling and the SFU.

Escalation creates one media session per call. Each participant ("shopper:<id>",
"staff:<id>") then negotiates one WebRTC connection with the media server, carrying its SDP
through the signalling WebSocket (`media.offer` / `media.answer`). The media server talks
back to participants (server-initiated renegotiation when someone joins, "video paused: low
bandwidth" notices) through the `notify` callback it is bound to, so it never needs to know
about WebSockets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .model import CallKind

# notify(participant_id, message): deliver a signalling message to every connection of that
# participant; it never blocks and drops the message if the participant is not connected.
Notify = Callable[[str, dict[str, Any]], None]


class MediaUnavailable(Exception):
    """The deployment has no media server, or the session is gone."""


class MediaNegotiationError(Exception):
    """The participant's SDP was refused (broken SDP, no common codec)."""


class TryOnUnavailable(Exception):
    """Virtual try-on cannot run here: no media server, try-on not offered by this
    store, or a call without video the server can decode."""


class UnknownGarment(Exception):
    """The garment id is not in the catalogue; the message lists what is."""


@dataclass(frozen=True, slots=True)
class MediaSessionSpec:
    session_id: str
    conversation_id: str
    call_id: str  # put in every message the media server pushes, so clients can answer it
    kind: CallKind
    store_id: str | None  # the per-store bandwidth budget applies to this session
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CallQuality:
    """What the media server measured over one call, stored with the call when it ends.

    The business reports join it to outcomes (did calls that froze sell less?), so it is a
    handful of per-call totals rather than a time series. Definitions (SFU side, see
    mediaserver/call_quality.py): a freeze is a gap of more than 0.5 s in the video forwarded
    to a receiver while that receiver's video was not paused and its publisher was sending;
    loss fractions are of video packets (publisher to server: lost after retransmissions;
    server to receiver: as the receivers' RTCP reports say), the worst stream of the call.
    """

    measured_s: float  # how long the media session was watched
    video_freezes: int = 0
    freeze_s: float = 0.0
    audio_only_fallbacks: int = 0  # times a receiver was switched to audio only
    audio_only_s: float = 0.0  # receiver-seconds spent audio only
    loss_fraction: float | None = None  # worst of the two directions; None: no video
    uplink_loss_fraction: float | None = None
    downlink_loss_fraction: float | None = None
    max_rtt_ms: float | None = None
    video_packets_forwarded: int = 0
    audio_packets_forwarded: int = 0


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """A participant's trickled ICE candidate (`media.candidate`); `candidate` empty means
    end-of-candidates for the generation `ufrag` names."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    ufrag: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """A participant's own view of its media connection (`media.connection`)."""

    state: str  # "connected" | "failed"
    candidate_type: str | None = None
    protocol: str | None = None
    relay_protocol: str | None = None
    errors: tuple[tuple[str, int, str], ...] = ()  # (url, code, text) from icecandidateerror


class MediaBackend(Protocol):
    def bind(self, notify: Notify) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create_session(self, spec: MediaSessionSpec) -> None: ...

    def join_info(self, session_id: str, participant_id: str) -> dict[str, Any]:
        """What a participant needs to join: session id, call, kind. (The ICE servers it
        is given are signalling's business: see signaling/ice_servers.py.)"""

    async def offer(self, session_id: str, participant_id: str, sdp: str) -> str:
        """Apply the participant's offer (first join, renegotiation or ICE restart); return
        the answer SDP."""

    async def answer(self, session_id: str, participant_id: str, sdp: str) -> None:
        """Apply the participant's answer to an offer the server sent through notify."""

    async def add_candidate(self, session_id: str, participant_id: str,
                            candidate: IceCandidate) -> None:
        """A trickled remote candidate (or end-of-candidates) for the participant's current
        connection; one of an earlier ICE generation is ignored."""

    def connection_report(self, session_id: str, participant_id: str,
                          report: ConnectionReport) -> None:
        """Keep (and log when it failed) what the participant's client says of its
        connection, for operators."""

    async def add_participant(self, session_id: str, participant_id: str) -> None: ...

    async def remove_participant(self, session_id: str, participant_id: str) -> None: ...

    async def close_session(self, session_id: str) -> None: ...

    def describe(self) -> list[dict[str, Any]]:
        """Live sessions for the operator endpoint."""

    def call_quality(self, session_id: str) -> CallQuality | None:
        """The session's quality totals so far; read just before close_session. None when
        the backend measures nothing, no participant's media ever connected, or the session
        is unknown."""

    async def set_tryon(self, session_id: str, participant_id: str,
                        garment_id: str | None) -> dict[str, Any]:
        """Turn virtual try-on on (a garment id; again to switch) or off (None) for a
        participant's video; returns {"enabled", "garment"}. Raises MediaUnavailable,
        TryOnUnavailable or UnknownGarment."""


class NoMediaBackend:
    """Used when no media server is configured: calls are recorded and signalled, but
    negotiating media is refused with `media_unavailable`, so clients fail clearly."""

    def __init__(self) -> None:
        self._sessions: dict[str, MediaSessionSpec] = {}

    def bind(self, notify: Notify) -> None:
        self._notify = notify

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._sessions.clear()

    async def create_session(self, spec: MediaSessionSpec) -> None:
        self._sessions[spec.session_id] = spec

    def join_info(self, session_id: str, participant_id: str) -> dict[str, Any]:
        spec = self._sessions[session_id]
        return {
            "session_id": session_id,
            "call_id": spec.call_id,
            "participant_id": participant_id,
            "kind": spec.kind.value,
            "media_available": False,
        }

    async def offer(self, session_id: str, participant_id: str, sdp: str) -> str:
        raise MediaUnavailable("this deployment has no media server configured")

    async def answer(self, session_id: str, participant_id: str, sdp: str) -> None:
        raise MediaUnavailable("this deployment has no media server configured")

    async def add_candidate(self, session_id: str, participant_id: str,
                            candidate: IceCandidate) -> None:
        raise MediaUnavailable("this deployment has no media server configured")

    def connection_report(self, session_id: str, participant_id: str,
                          report: ConnectionReport) -> None:
        return None

    async def add_participant(self, session_id: str, participant_id: str) -> None:
        if session_id not in self._sessions:
            raise MediaUnavailable(f"no media session {session_id}")

    async def remove_participant(self, session_id: str, participant_id: str) -> None:
        return None

    async def set_tryon(self, session_id: str, participant_id: str,
                        garment_id: str | None) -> dict[str, Any]:
        raise TryOnUnavailable("virtual try-on needs the media server, and this deployment "
                               "has none configured")

    async def close_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def call_quality(self, session_id: str) -> CallQuality | None:
        return None  # no media flowed, so there is nothing to report

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"session_id": s.session_id, "conversation_id": s.conversation_id,
             "kind": s.kind.value, "participants": list(s.participants)}
            for s in self._sessions.values()
        ]
