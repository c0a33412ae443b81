"""The storage interface the switchboard and HTTP API depend on.

It is a Protocol so a server database (PostgreSQL) can be added later without touching the
callers. Every write method returns only once the data is durable: callers acknowledge
messages to clients after awaiting it. Methods that take `events` write them in the same
transaction as the row they change, so a state and its timestamped history never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .media import CallQuality
from .model import (
    AsyncMessage,
    Call,
    ChatMessage,
    Conversation,
    ConversationEvent,
    ConversationState,
    Outcome,
    Presence,
    Rating,
    StaffMember,
    Store,
)


class StorageError(Exception):
    """Raised when the database refuses an operation (constraint, corruption, closed)."""


class Storage(Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    # Stores and staff -------------------------------------------------------------------
    async def upsert_store(self, store: Store) -> None: ...

    async def get_store(self, store_id: str) -> Store | None: ...

    async def list_stores(self) -> list[Store]: ...

    async def upsert_staff(self, staff: StaffMember) -> None: ...

    async def get_staff(self, staff_id: str) -> StaffMember | None: ...

    async def list_staff(self) -> list[StaffMember]: ...

    async def record_presence(self, staff_id: str, presence: Presence, at: float) -> None:
        """Append to the presence log (time online per staff member is computed from it)."""

    # Conversations ----------------------------------------------------------------------
    async def create_conversation(
        self, conversation: Conversation, events: Sequence[ConversationEvent]
    ) -> None: ...

    async def update_conversation(
        self, conversation: Conversation, events: Sequence[ConversationEvent]
    ) -> None:
        """Persist state, staff_id, queued_at, closed_at, declined_by and the context's skill
        (a transfer to a skill changes it), plus events. Raises StorageError for an unknown id."""

    async def add_events(self, events: Sequence[ConversationEvent]) -> None: ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    async def list_conversations(
        self,
        *,
        shopper_id: str | None = None,
        staff_id: str | None = None,
        store_id: str | None = None,
        states: Sequence[ConversationState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Conversation]:
        """Newest first."""

    async def list_events(self, conversation_id: str) -> list[ConversationEvent]:
        """Oldest first."""

    # Messages ---------------------------------------------------------------------------
    async def add_message(self, message: ChatMessage) -> ChatMessage:
        """Store a message; idempotent on (conversation_id, sender_id, client_id).

        The seq passed in is ignored: storage assigns the next one inside the write
        transaction, so concurrent senders never collide.
        A resend with the same client id returns the message stored the first time (with its
        original seq) instead of storing a duplicate.
        """

    async def list_messages(self, conversation_id: str, after_seq: int = 0) -> list[ChatMessage]:
        """Oldest first."""

    async def last_seq(self, conversation_id: str) -> int:
        """0 when the conversation has no message."""

    # Calls ------------------------------------------------------------------------------
    async def upsert_call(self, call: Call, events: Sequence[ConversationEvent] = ()) -> None: ...

    async def list_calls(self, conversation_id: str) -> list[Call]: ...

    async def list_open_calls(self) -> list[Call]:
        """Calls without an end: running now, or left open by a process that died."""

    async def record_call_quality(self, call_id: str, quality: CallQuality, at: float) -> None:
        """Keep what the media server measured over a call (once, when it ends); a second
        record for the same call replaces the first."""

    # Ratings and outcomes ---------------------------------------------------------------
    async def add_rating(self, rating: Rating, events: Sequence[ConversationEvent] = ()) -> None:
        """One rating per conversation: raises StorageError on a second one."""

    async def get_rating(self, conversation_id: str) -> Rating | None: ...

    async def set_outcome(self, outcome: Outcome, events: Sequence[ConversationEvent] = ()) -> None:
        """Replaces an earlier outcome of the same conversation (the back end may correct it)."""

    async def get_outcome(self, conversation_id: str) -> Outcome | None: ...

    # Asynchronous messages --------------------------------------------------------------
    async def add_async_message(
        self, message: AsyncMessage, events: Sequence[ConversationEvent] = ()
    ) -> AsyncMessage:
        """Returns the message with its id assigned (the id passed in is ignored)."""

    async def answer_async_message(
        self,
        message_id: int,
        answer: str,
        staff_id: str,
        at: float,
        events: Sequence[ConversationEvent] = (),
    ) -> AsyncMessage | None:
        """None when no such message; answering twice replaces the answer."""

    async def get_async_message(self, message_id: int) -> AsyncMessage | None: ...

    async def list_async_messages(
        self,
        *,
        answered: bool | None = None,
        store_id: str | None = None,
        conversation_id: str | None = None,
        shopper_id: str | None = None,
        limit: int = 100,
    ) -> list[AsyncMessage]:
        """Oldest first."""
