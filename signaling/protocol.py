"""The signalling WebSocket protocol: inbound message models, error codes, framing helpers.

Every client message is a JSON object with a `type`, an optional client-chosen `id` that the
server echoes in its reply, and an optional protocol version `v`. The server replies to each
request with exactly one `ack` (carrying a `result`) or one `error` (carrying a stable `code`),
and pushes events (no `id`) as things happen. docs/protocol.md documents every message; a test
checks that each type below has a documented example that validates.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .model import CallKind, Channel, Presence, Role

PROTOCOL_VERSION = 1
_ID_NEAR_START = re.compile(r'"id"\s*:\s*"([^"\\]{1,64})"')

Id = Annotated[str, Field(min_length=1, max_length=64)]
ShortText = Annotated[str, Field(max_length=200)]


class ErrorCode(StrEnum):
    """Stable error codes: clients branch on these, so never rename one."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_TOKEN = "invalid_token"
    EXPIRED_TOKEN = "expired_token"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID_STATE = "invalid_state"
    MEDIA_UNAVAILABLE = "media_unavailable"
    NEGOTIATION_FAILED = "negotiation_failed"
    TRYON_UNAVAILABLE = "tryon_unavailable"
    UNKNOWN_GARMENT = "unknown_garment"
    INVALID_GARMENT = "invalid_garment"
    STORAGE_FAILED = "storage_failed"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL_ERROR = "internal_error"


class ProtocolError(Exception):
    """Raised anywhere below the WebSocket edge; turned into an `error` reply there."""

    def __init__(self, code: ErrorCode, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.request_id: str | None = None


class Inbound(BaseModel):
    """Common envelope; subclasses add their fields and the roles allowed to send them."""

    # allow_inf_nan=False: 1e999 parses as infinity, which would go back out as non-JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    roles: ClassVar[frozenset[Role]] = frozenset(Role)

    type: str
    id: Id | None = None
    v: int = PROTOCOL_VERSION


_SHOPPER = frozenset({Role.SHOPPER})
_STAFF = frozenset({Role.STAFF})
_PARTICIPANTS = frozenset({Role.SHOPPER, Role.STAFF})


class Hello(Inbound):
    type: Literal["hello"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class Ping(Inbound):
    type: Literal["ping"]


class PresenceSet(Inbound):
    roles = _STAFF
    type: Literal["presence.set"]
    status: Presence


class ConversationOpen(Inbound):
    roles = _SHOPPER
    type: Literal["conversation.open"]
    store: Id | None = None
    page_url: Annotated[str, Field(max_length=2048)] | None = None
    sku: Id | None = None
    skill: Id | None = None
    language: Annotated[str, Field(min_length=2, max_length=16)] | None = None
    channel: Channel = Channel.CHAT
    # Pre-chat qualification answers: question id -> option id; used when skill is absent.
    answers: dict[Id, Id] | None = None


class ConversationResume(Inbound):
    roles = _PARTICIPANTS
    type: Literal["conversation.resume"]
    conversation_id: Id
    after_seq: Annotated[int, Field(ge=0)] = 0


class ConversationAccept(Inbound):
    roles = _STAFF
    type: Literal["conversation.accept"]
    conversation_id: Id


class ConversationDecline(Inbound):
    roles = _STAFF
    type: Literal["conversation.decline"]
    conversation_id: Id
    reason: ShortText | None = None


class ConversationTransfer(Inbound):
    roles = _STAFF
    type: Literal["conversation.transfer"]
    conversation_id: Id
    to_staff: Id | None = None
    to_skill: Id | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ConversationTransfer:
        if (self.to_staff is None) == (self.to_skill is None):
            raise ValueError("give exactly one of to_staff or to_skill")
        return self


class ConversationClose(Inbound):
    roles = _PARTICIPANTS
    type: Literal["conversation.close"]
    conversation_id: Id


class ProductCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    sku: Id
    title: Annotated[str, Field(min_length=1, max_length=200)]
    price: Annotated[float, Field(ge=0)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    image_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    link: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None


class ChatSend(Inbound):
    roles = _PARTICIPANTS
    type: Literal["chat.send"]
    conversation_id: Id
    # Upper bound here is a hard cap; the configured limits.max_text_chars is checked too.
    text: Annotated[str, Field(min_length=1, max_length=20000)] | None = None
    card: ProductCard | None = None

    @model_validator(mode="after")
    def _text_or_card(self) -> ChatSend:
        if (self.text is None) == (self.card is None):
            raise ValueError("give exactly one of text or card")
        return self


class ChatTyping(Inbound):
    roles = _PARTICIPANTS
    type: Literal["chat.typing"]
    conversation_id: Id
    typing: bool


class ChatRead(Inbound):
    roles = _PARTICIPANTS
    type: Literal["chat.read"]
    conversation_id: Id
    seq: Annotated[int, Field(ge=1)]


class CallPropose(Inbound):
    roles = _PARTICIPANTS
    type: Literal["call.propose"]
    conversation_id: Id
    kind: CallKind


class CallAccept(Inbound):
    roles = _PARTICIPANTS
    type: Literal["call.accept"]
    call_id: Id


class CallDecline(Inbound):
    roles = _PARTICIPANTS
    type: Literal["call.decline"]
    call_id: Id


class CallEnd(Inbound):
    roles = _PARTICIPANTS
    type: Literal["call.end"]
    call_id: Id


class CallInvite(Inbound):
    """The call's staff member asks a colleague (a product specialist, a manager) to join."""

    roles = _STAFF
    type: Literal["call.invite"]
    call_id: Id
    staff_id: Id


class CallJoin(Inbound):
    """An invited colleague joins the running call (then negotiates media as usual)."""

    roles = _STAFF
    type: Literal["call.join"]
    call_id: Id


class CallLeave(Inbound):
    """A colleague who joined leaves; the call goes on for the others."""

    roles = _STAFF
    type: Literal["call.leave"]
    call_id: Id


class MediaOffer(Inbound):
    roles = _PARTICIPANTS
    type: Literal["media.offer"]
    call_id: Id
    sdp: Annotated[str, Field(min_length=1, max_length=65536)]


class MediaAnswer(Inbound):
    roles = _PARTICIPANTS
    type: Literal["media.answer"]
    call_id: Id
    sdp: Annotated[str, Field(min_length=1, max_length=65536)]


class MediaCandidate(Inbound):
    """Trickle ICE: one of the sender's ICE candidates as its browser finds it (the
    `icecandidate` event), or end-of-candidates (`candidate` empty). Offers no longer wait
    for gathering, so a slow or blocked STUN/TURN server costs the set-up nothing."""

    roles = _PARTICIPANTS
    type: Literal["media.candidate"]
    call_id: Id
    # The "candidate:..." attribute value; "" means no more candidates (this generation).
    candidate: Annotated[str, Field(max_length=1024)]
    sdp_mid: Annotated[str, Field(max_length=64)] | None = None
    sdp_mline_index: Annotated[int, Field(ge=0, le=255)] | None = None
    # The ICE username fragment it belongs to: candidates of an earlier generation (before
    # an ICE restart) are ignored.
    ufrag: Annotated[str, Field(max_length=256)] | None = None

    @model_validator(mode="after")
    def _where(self) -> MediaCandidate:
        if self.candidate and self.sdp_mid is None and self.sdp_mline_index is None:
            raise ValueError("a candidate needs sdp_mid or sdp_mline_index")
        return self


class IceError(BaseModel):
    """An `icecandidateerror` the browser saw: a STUN/TURN server that refused or did not
    answer (401: wrong or expired TURN credentials; 701: unreachable)."""

    model_config = ConfigDict(extra="ignore")
    url: Annotated[str, Field(max_length=256)] = ""
    code: Annotated[int, Field(ge=0, le=999)] = 0
    text: Annotated[str, Field(max_length=200)] = ""


class MediaConnection(Inbound):
    """The sender's own view of its media connection, for operators: reported when it
    connects (which candidate types were chosen) and when it gives up (the errors its STUN
    and TURN servers gave). The server's own view comes from its end of the connection."""

    roles = _PARTICIPANTS
    type: Literal["media.connection"]
    call_id: Id
    state: Literal["connected", "failed"]
    # The selected pair's local candidate: host | srflx | prflx | relay, its transport, and
    # for relay candidates how the browser reaches its TURN server (udp | tcp | tls).
    candidate_type: Literal["host", "srflx", "prflx", "relay"] | None = None
    protocol: Literal["udp", "tcp"] | None = None
    relay_protocol: Literal["udp", "tcp", "tls"] | None = None
    errors: Annotated[list[IceError], Field(max_length=8)] = []


class MediaState(Inbound):
    """What the sender's own devices do: its camera turned off or on (a tile says "camera
    off" only when its owner said so, never because frames stopped on a weak link)."""

    roles = _PARTICIPANTS
    type: Literal["media.state"]
    call_id: Id
    camera: Literal["on", "off"]


class TryOnSet(Inbound):
    """Virtual try-on on the shopper's own camera: on with a garment (again to switch), or
    off. Only the shopper decides what is drawn on their image."""

    roles = _SHOPPER
    type: Literal["tryon.set"]
    call_id: Id
    enabled: bool
    garment_id: Id | None = None

    @model_validator(mode="after")
    def _garment_when_enabled(self) -> TryOnSet:
        if self.enabled and self.garment_id is None:
            raise ValueError("garment_id is required when enabled is true")
        if not self.enabled and self.garment_id is not None:
            raise ValueError("garment_id must be absent when enabled is false")
        return self


class FeedbackSubmit(Inbound):
    roles = _SHOPPER
    type: Literal["feedback.submit"]
    conversation_id: Id
    satisfaction: Annotated[int, Field(ge=1, le=5)]
    recommendation: Annotated[int, Field(ge=0, le=10)]
    comment: Annotated[str, Field(max_length=2000)] | None = None


class AsyncLeave(Inbound):
    roles = _SHOPPER
    type: Literal["async.leave"]
    conversation_id: Id
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    contact: Annotated[str, Field(min_length=3, max_length=200)]


class QueueList(Inbound):
    roles = _STAFF
    type: Literal["queue.list"]


INBOUND: dict[str, type[Inbound]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        Hello, Ping, PresenceSet, ConversationOpen, ConversationResume, ConversationAccept,
        ConversationDecline, ConversationTransfer, ConversationClose, ChatSend, ChatTyping,
        ChatRead, CallPropose, CallAccept, CallDecline, CallEnd, CallInvite, CallJoin,
        CallLeave, MediaOffer, MediaAnswer, MediaCandidate, MediaConnection, MediaState,
        TryOnSet, FeedbackSubmit, AsyncLeave, QueueList,
    )
}

# Events the server pushes (documented in docs/protocol.md; the doc test checks this list).
OUTBOUND_TYPES: tuple[str, ...] = (
    "welcome", "pong", "ack", "error",
    "presence.changed", "queue.snapshot",
    "queue.position", "conversation.offered", "conversation.offer_withdrawn",
    "conversation.accepted", "conversation.transferred", "conversation.requeued",
    "conversation.missed", "conversation.closed", "feedback.requested",
    "chat.message", "chat.typing", "chat.read",
    "call.proposed", "call.declined", "call.started", "call.ended",
    "call.invited", "call.joined", "call.left",
    "media.offer", "media.answer", "media.candidate", "media.notice", "media.layer",
    "media.sources", "media.state",
    "tryon.state",
    "async.left", "async.answered",
    "server.shutdown",
)


def peek_id(data: Any) -> str | None:
    """Best-effort request id for error replies to messages that failed validation."""
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


def parse_inbound(raw: str | bytes, max_bytes: int) -> Inbound:
    """Decode and validate one frame; raise ProtocolError with a stable code on any problem."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
    if size > max_bytes:
        exc = ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"message of {size} bytes exceeds the {max_bytes} limit"
        )
        # Not parsed (that is the point of the limit), but the id is usually near the start:
        # echoing it lets the client fail the right request instead of waiting for a timeout.
        head = raw[:512] if isinstance(raw, str) else raw[:512].decode("utf-8", "replace")
        match = _ID_NEAR_START.search(head)
        exc.request_id = match.group(1) if match else None
        raise exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: deeply nested arrays; not a ValueError, but just as invalid.
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc!s:.200}") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
    try:
        return _validate(data)
    except ProtocolError as exc:
        exc.request_id = peek_id(data)
        raise


def _validate(data: dict[str, Any]) -> Inbound:
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "field 'type' (string) is required")
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; this server speaks {PROTOCOL_VERSION}",
        )
    model = INBOUND.get(kind)
    if model is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or None, "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p['field'] or kind}: {p['problem']}" for p in problems[:5])
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, summary, problems) from None


def ack(request_id: str | None, result: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "ack", "id": request_id, "result": result or {}}


def error(
    request_id: str | None, code: ErrorCode, message: str, details: Any = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "id": request_id, "code": code.value,
                           "message": message}
    if details is not None:
        out["details"] = details
    return out
