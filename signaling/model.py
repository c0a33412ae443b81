"""Domain vocabulary shared by routing, storage, the switchboard and the HTTP/WebSocket edges.

These are plain data classes with no behaviour that touches I/O, so every module can import
them without pulling in aiohttp or SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    SHOPPER = "shopper"
    STAFF = "staff"
    OPERATOR = "operator"


class Presence(StrEnum):
    """What a staff member told us about themselves; only ONLINE is routable."""

    ONLINE = "online"
    AWAY = "away"
    BUSY_IN_STORE = "busy_in_store"  # serving a customer on the shop floor
    OFFLINE = "offline"


class Channel(StrEnum):
    CHAT = "chat"
    AUDIO = "audio"
    VIDEO = "video"


class CallKind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


class ConversationState(StrEnum):
    """Where a conversation is in its life; transitions are recorded as events."""

    QUEUED = "queued"  # waiting for a staff member
    ASSIGNED = "assigned"  # offered to one staff member, waiting for accept/decline
    ACCEPTED = "accepted"  # a staff member is talking with the shopper
    MISSED = "missed"  # nobody took it in time; the asynchronous channel is offered
    CLOSED = "closed"

    @property
    def is_live(self) -> bool:
        return self in (ConversationState.QUEUED, ConversationState.ASSIGNED,
                        ConversationState.ACCEPTED)


class EventKind(StrEnum):
    """Every timestamped state change kept for a conversation (the KPI source of truth)."""

    OPENED = "opened"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    DECLINED = "declined"
    OFFER_EXPIRED = "offer_expired"
    ACCEPTED = "accepted"
    TRANSFERRED = "transferred"
    STAFF_LOST = "staff_lost"
    ESCALATED = "escalated"  # a call was proposed
    CALL_DECLINED = "call_declined"
    CALL_STARTED = "call_started"
    CALL_ENDED = "call_ended"
    CALL_JOINED = "call_joined"  # a colleague joined a running call
    CALL_LEFT = "call_left"
    TRYON = "tryon"  # the shopper turned virtual try-on on (or switched garment) in a call
    MISSED = "missed"
    ASYNC_LEFT = "async_left"
    ASYNC_ANSWERED = "async_answered"
    CLOSED = "closed"
    RATED = "rated"
    OUTCOME = "outcome"


class MessageKind(StrEnum):
    TEXT = "text"
    PRODUCT_CARD = "product_card"
    ASYNC = "async"  # left by a shopper after a missed conversation
    ASYNC_ANSWER = "async_answer"


class SenderRole(StrEnum):
    SHOPPER = "shopper"
    STAFF = "staff"
    SYSTEM = "system"


@dataclass(slots=True)
class Store:
    id: str
    name: str
    # Whether conversations asked for this store may overflow to staff of other stores.
    overflow: bool = True
    uplink_kbps: int | None = None
    downlink_kbps: int | None = None
    staff_cost_per_hour: float | None = None


@dataclass(slots=True)
class StaffMember:
    id: str
    name: str
    store_id: str
    skills: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    max_conversations: int = 2
    channels: frozenset[Channel] = frozenset(Channel)

    def may_answer(self, store_id: str | None, skill: str | None) -> bool:
        """Staff answer messages left for their store (or any store) matching their skills."""
        if store_id is not None and store_id != self.store_id:
            return False
        return skill is None or skill in self.skills


@dataclass(slots=True, frozen=True)
class ConversationContext:
    """What the shopper's page knew when the chat was opened; drives routing."""

    store_id: str | None = None  # None: any store
    page_url: str | None = None
    sku: str | None = None
    skill: str | None = None
    language: str | None = None
    channel: Channel = Channel.CHAT


@dataclass(slots=True)
class Conversation:
    id: str
    shopper_id: str
    context: ConversationContext
    state: ConversationState
    opened_at: float  # unix seconds
    staff_id: str | None = None
    queued_at: float | None = None
    # Staff members who declined or let the offer expire; routing skips them.
    declined_by: set[str] = field(default_factory=set)
    closed_at: float | None = None


@dataclass(slots=True, frozen=True)
class ConversationEvent:
    conversation_id: str
    kind: EventKind
    at: float
    actor: str | None = None  # "shopper:<id>", "staff:<id>", "system"
    data: dict | None = None


@dataclass(slots=True, frozen=True)
class ChatMessage:
    conversation_id: str
    seq: int  # 1, 2, 3... per conversation, assigned by the server
    sender_role: SenderRole
    sender_id: str | None
    kind: MessageKind
    text: str | None
    card: dict | None  # product card: sku, title, price, currency, image_url, link
    at: float
    client_id: str | None = None  # the sender's message id, so a resend is not stored twice


@dataclass(slots=True, frozen=True)
class Rating:
    conversation_id: str
    satisfaction: int  # 1-5
    recommendation: int  # 0-10
    comment: str | None
    at: float


@dataclass(slots=True, frozen=True)
class Outcome:
    conversation_id: str
    order_placed: bool
    order_value: float | None
    currency: str | None
    reported_by: str
    at: float


@dataclass(slots=True)
class AsyncMessage:
    """A message left by a shopper when nobody was free, and its later answer."""

    id: int
    conversation_id: str
    shopper_id: str
    store_id: str | None
    skill: str | None
    text: str
    contact: str
    created_at: float
    answer: str | None = None
    answered_by: str | None = None
    answered_at: float | None = None


@dataclass(slots=True)
class Call:
    id: str
    conversation_id: str
    kind: CallKind
    proposed_by: str  # "shopper:<id>" or "staff:<id>"
    proposed_at: float
    started_at: float | None = None
    ended_at: float | None = None
    media_session_id: str | None = None
