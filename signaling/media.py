"""The media session interface between signalling and the SFU.

Escalation creates one media session per call. Each participant ("shopper:<id>",
"staff:<id>") then negotiates one WebRTC connection with the media server, carrying its SDP
through the signalling WebSocket (`media.offer` / `media.answer`). The media server talks
back to participants (server-initiated renegotiation when someone joins, "video paused: low
bandwidth" notices) through the `notify` callback it is bound to, so it never needs to know
about WebSockets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


@dataclass(frozen=True, slots=True)
class MediaSessionSpec:
    session_id: str
    conversation_id: str
    call_id: str  # put in every message the media server pushes, so clients can answer it
    kind: CallKind
    store_id: str | None  # the per-store bandwidth budget applies to this session
    participants: tuple[str, ...]


class MediaBackend(Protocol):
    def bind(self, notify: Notify) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create_session(self, spec: MediaSessionSpec) -> None: ...

    def join_info(self, session_id: str, participant_id: str) -> dict[str, Any]:
        """What a participant needs to join: ICE servers, session id, who else is there."""

    async def offer(self, session_id: str, participant_id: str, sdp: str) -> str:
        """Apply the participant's offer (first join, renegotiation or ICE restart); return
        the answer SDP."""

    async def answer(self, session_id: str, participant_id: str, sdp: str) -> None:
        """Apply the participant's answer to an offer the server sent through notify."""

    async def add_participant(self, session_id: str, participant_id: str) -> None: ...

    async def remove_participant(self, session_id: str, participant_id: str) -> None: ...

    async def close_session(self, session_id: str) -> None: ...

    def describe(self) -> list[dict[str, Any]]:
        """Live sessions for the operator endpoint."""


class NoMediaBackend:
    """Used when no media server is configured: calls are recorded and signalled, but
    negotiating media is refused with `media_unavailable`, so clients fail clearly."""

    def __init__(self, ice_servers: Sequence[dict[str, Any]] = ()) -> None:
        self._ice_servers = [dict(s) for s in ice_servers]
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
            "ice_servers": self._ice_servers,
            "media_available": False,
        }

    async def offer(self, session_id: str, participant_id: str, sdp: str) -> str:
        raise MediaUnavailable("this deployment has no media server configured")

    async def answer(self, session_id: str, participant_id: str, sdp: str) -> None:
        raise MediaUnavailable("this deployment has no media server configured")

    async def add_participant(self, session_id: str, participant_id: str) -> None:
        if session_id not in self._sessions:
            raise MediaUnavailable(f"no media session {session_id}")

    async def remove_participant(self, session_id: str, participant_id: str) -> None:
        return None

    async def close_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"session_id": s.session_id, "conversation_id": s.conversation_id,
             "kind": s.kind.value, "participants": list(s.participants)}
            for s in self._sessions.values()
        ]
