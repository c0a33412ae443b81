"""The switchboard: live state of staff, conversations, queue and calls, and the rules that
move conversations between them.

Decisions are taken by the pure modules (routing, waiting_queue, availability, presence);
this class applies them to in-memory state synchronously, so concurrent requests always see a
consistent picture, and writes each change to storage. A request is acknowledged only after
the writes it caused are durable (`_settle`). Timers (offer expiry, missed conversations, dead
devices, reconnect grace) run from one ticker task, not one task per conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .auth import Principal
from .availability import Availability, compute_availability
from .ice_servers import IceServerIssuer
from .media import (
    ConnectionReport,
    IceCandidate,
    MediaBackend,
    MediaNegotiationError,
    MediaSessionSpec,
    MediaUnavailable,
    TryOnUnavailable,
    UnknownGarment,
)
from .metrics import ANY_STORE, SignalingMetrics
from .model import (
    AsyncMessage,
    Call,
    Channel,
    ChatMessage,
    Conversation,
    ConversationContext,
    ConversationEvent,
    ConversationState,
    EventKind,
    MessageKind,
    Presence,
    Rating,
    Role,
    SenderRole,
    StaffMember,
    Store,
)
from .presence import HeartbeatMonitor
from .protocol import (
    AsyncLeave,
    CallAccept,
    CallDecline,
    CallEnd,
    CallInvite,
    CallJoin,
    CallLeave,
    CallPropose,
    ChatRead,
    ChatSend,
    ChatTyping,
    ConversationAccept,
    ConversationClose,
    ConversationDecline,
    ConversationOpen,
    ConversationResume,
    ConversationTransfer,
    ErrorCode,
    FeedbackSubmit,
    Inbound,
    MediaAnswer,
    MediaCandidate,
    MediaConnection,
    MediaOffer,
    MediaState,
    PresenceSet,
    ProtocolError,
    TryOnSet,
)
from .qualification import QualificationError, QuestionSet
from .routing import Candidate, can_serve, choose_staff, matching
from .storage import Storage, StorageError
from .waiting_queue import HandleTimeEstimator, WaitingQueue, estimate_wait_s

log = logging.getLogger(__name__)

MAX_LIVE_CONVERSATIONS_PER_SHOPPER = 3
TICK_S = 0.25


class Connection(Protocol):
    """One signalling WebSocket as the switchboard sees it: it can only queue messages."""

    conn_id: str
    principal: Principal

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclasses.dataclass(slots=True)
class RoutingSettings:
    offer_timeout_s: float = 30.0
    missed_after_s: float = 120.0
    heartbeat_timeout_s: float = 15.0
    staff_reconnect_grace_s: float = 30.0
    default_handle_time_s: float = 240.0
    allow_overflow: bool = True
    max_text_chars: int = 4000


@dataclasses.dataclass(slots=True)
class StaffLive:
    member: StaffMember
    presence: Presence = Presence.OFFLINE
    connections: dict[str, Connection] = dataclasses.field(default_factory=dict)
    conversations: set[str] = dataclasses.field(default_factory=set)  # offered or accepted
    last_activity_at: float = 0.0
    lost_at: float | None = None  # device vanished while holding accepted conversations


def actor_of(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.subject}"


# What a draining server refuses: everything that would start something new.
_NEW_WORK = frozenset({"conversation.open", "call.propose", "call.invite", "call.join"})


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class Switchboard:
    def __init__(
        self,
        *,
        storage: Storage,
        settings: RoutingSettings,
        metrics: SignalingMetrics,
        media: MediaBackend,
        questions: QuestionSet | None = None,
        clock: Callable[[], float] = time.time,
        ice: IceServerIssuer | None = None,
    ) -> None:
        self.storage = storage
        self.ice = ice or IceServerIssuer(clock=clock)
        self.settings = settings
        self.metrics = metrics
        self.media = media
        self.questions = questions
        self.clock = clock
        self.stores: dict[str, Store] = {}
        self.staff: dict[str, StaffLive] = {}
        self.conversations: dict[str, Conversation] = {}  # live ones only
        self.queue = WaitingQueue()
        self.shoppers: dict[str, dict[str, Connection]] = {}
        self.heartbeats = HeartbeatMonitor(settings.heartbeat_timeout_s)
        self.handle_time = HandleTimeEstimator(settings.default_handle_time_s)
        self._staff_conns: dict[str, Connection] = {}
        self._attached: dict[str, Connection] = {}
        self._declined_at: dict[str, float] = {}
        self._offer_deadline: dict[str, float] = {}
        self._waiting_since: dict[str, float] = {}
        self._accepted_at: dict[str, float] = {}
        self._calls: dict[str, Call] = {}  # pending or active, by call id
        self._call_of: dict[str, str] = {}  # conversation id -> call id
        # Colleagues brought into a running call: invited (not yet there) and joined.
        self._invited: dict[str, set[str]] = {}  # call id -> staff ids
        self._guests: dict[str, set[str]] = {}  # call id -> staff ids
        # Who in a call turned their camera off (participant ids), told to whoever joins.
        self._camera_off: dict[str, set[str]] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._queue_dirty = False
        self._ticker: asyncio.Task[None] | None = None
        # Set on SIGTERM: no new connections, conversations or calls (see shutdown.py).
        self.draining = False
        self._handlers: dict[str, Callable[[Connection, Any], Awaitable[dict[str, Any]]]] = {
            "presence.set": self._on_presence_set,
            "queue.list": self._on_queue_list,
            "conversation.open": self._on_open,
            "conversation.resume": self._on_resume,
            "conversation.accept": self._on_accept,
            "conversation.decline": self._on_decline,
            "conversation.transfer": self._on_transfer,
            "conversation.close": self._on_close,
            "chat.send": self._on_chat_send,
            "chat.typing": self._on_chat_relay,
            "chat.read": self._on_chat_relay,
            "call.propose": self._on_call_propose,
            "call.accept": self._on_call_accept,
            "call.decline": self._on_call_decline,
            "call.end": self._on_call_end,
            "call.invite": self._on_call_invite,
            "call.join": self._on_call_join,
            "call.leave": self._on_call_leave,
            "media.offer": self._on_media_offer,
            "media.answer": self._on_media_answer,
            "media.candidate": self._on_media_candidate,
            "media.connection": self._on_media_connection,
            "media.state": self._on_media_state,
            "tryon.set": self._on_tryon_set,
            "feedback.submit": self._on_feedback,
            "async.leave": self._on_async_leave,
        }

    # Lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load stores and staff, and put back what a previous process left open."""
        now = self.clock()
        self.stores = {s.id: s for s in await self.storage.list_stores()}
        for member in await self.storage.list_staff():
            self.staff[member.id] = StaffLive(member, last_activity_at=now)
        live = await self.storage.list_conversations(
            states=[ConversationState.QUEUED, ConversationState.ASSIGNED,
                    ConversationState.ACCEPTED], limit=1_000_000)
        for conv in sorted(live, key=lambda c: c.opened_at):
            self.conversations[conv.id] = conv
            holder = self.staff.get(conv.staff_id or "")
            if conv.state is ConversationState.ACCEPTED and holder is not None:
                # The staff member's device must come back within the grace period.
                holder.conversations.add(conv.id)
                holder.lost_at = now
                self._accepted_at[conv.id] = now
            else:
                # An offer does not survive a restart: the conversation waits again.
                conv.state, conv.staff_id = ConversationState.QUEUED, None
                conv.queued_at = conv.queued_at or conv.opened_at
                self._enqueue(conv, now)
                self._write(self.storage.update_conversation(self._snapshot(conv), []))
        await self._close_interrupted_calls()
        self.media.bind(self.notify_participant)
        await self._settle()
        self._update_gauges()
        self._ticker = asyncio.create_task(self._tick_loop(), name="switchboard-ticker")

    async def _close_interrupted_calls(self) -> None:
        """Calls a previous process left open (it crashed, or was killed) are over: media
        died with it. Each ends as `interrupted` at its last sign of life (its latest event
        or message), not at this restart, so call durations are not inflated by downtime."""
        for call in await self.storage.list_open_calls():
            conv_id = call.conversation_id
            last = max([call.started_at or call.proposed_at]
                       + [e.at for e in await self.storage.list_events(conv_id)]
                       + [m.at for m in await self.storage.list_messages(conv_id)])
            call.ended_at = last
            duration = None if call.started_at is None else round(last - call.started_at, 3)
            self._write(self.storage.upsert_call(call, [ConversationEvent(
                conv_id, EventKind.CALL_ENDED, last, "system",
                {"call_id": call.id, "reason": "interrupted", "duration_s": duration})]))
            log.info("call %s: left open by the previous process, closed as interrupted",
                     call.id)

    # Graceful shutdown (see shutdown.py) ---------------------------------------------------
    def begin_shutdown(self, grace_s: float) -> None:
        """Take no new work; tell every client, and let go of those not in a running call
        (they reconnect, to another node when there is one). Calls not yet answered end."""
        self.draining = True
        now = self.clock()
        for call in list(self._calls.values()):
            conv = self.conversations.get(call.conversation_id)
            if call.started_at is None and conv is not None:
                self._end_call(conv, now, reason="server_shutdown")
        notice = {"type": "server.shutdown", "reason": "restart", "grace_s": grace_s}
        for conn in list(self._attached.values()):
            conn.send(notice)
        self.release_idle_connections()

    def release_idle_connections(self) -> None:
        """Close (1001) every connection whose owner is in no running call."""
        busy = self._call_parties()
        for conn in list(self._attached.values()):
            if actor_of(conn.principal) not in busy:
                conn.close(1001, "server shutting down")

    def running_calls(self) -> int:
        return sum(1 for call in self._calls.values() if call.started_at is not None)

    def end_calls(self, reason: str) -> None:
        now = self.clock()
        for call in list(self._calls.values()):
            conv = self.conversations.get(call.conversation_id)
            if conv is not None:
                self._end_call(conv, now, reason=reason)

    def _call_parties(self) -> set[str]:
        parties: set[str] = set()
        for call in self._calls.values():
            conv = self.conversations.get(call.conversation_id)
            if conv is None:
                continue
            parties.add(f"{Role.SHOPPER.value}:{conv.shopper_id}")
            if conv.staff_id:
                parties.add(f"{Role.STAFF.value}:{conv.staff_id}")
            parties.update(f"{Role.STAFF.value}:{s}" for s in self._guests.get(call.id, ()))
        return parties

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.close_connections()
        await self._settle(strict=False)

    def close_connections(self) -> None:
        """Close every client connection with 1001 (going away)."""
        for conn in list(self._attached.values()):
            conn.close(1001, "server shutting down")

    def add_store(self, store: Store) -> None:
        self.stores[store.id] = store

    def add_staff(self, member: StaffMember) -> None:
        live = self.staff.get(member.id)
        if live is None:
            self.staff[member.id] = StaffLive(member, last_activity_at=self.clock())
        else:
            live.member = member
            self._queue_dirty = True

    # Writes -------------------------------------------------------------------------------
    def _write(self, awaitable: Awaitable[Any]) -> None:
        """Start a storage write now (so writes reach the database in decision order)."""
        fut = asyncio.ensure_future(awaitable)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def _settle(self, *, strict: bool = True) -> None:
        """Wait until every write started so far is durable; fail the request otherwise."""
        if not self._pending:
            return
        results = await asyncio.gather(*list(self._pending), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            log.error("storage write failed: %r", failure)
        if failures and strict:
            raise ProtocolError(ErrorCode.STORAGE_FAILED, "the change could not be stored")

    async def flush(self) -> None:
        """Read-your-writes: events are pushed before their write lands, so anything that
        reads storage after seeing an event must wait for pending writes first."""
        await self._settle(strict=False)

    def _event(self, conv: Conversation, kind: EventKind, now: float, actor: str | None = None,
               /, **data: Any) -> ConversationEvent:
        return ConversationEvent(conv.id, kind, now, actor or "system", data or None)

    @staticmethod
    def _snapshot(conv: Conversation) -> Conversation:
        return dataclasses.replace(conv, declined_by=set(conv.declined_by))

    def _save(self, conv: Conversation, *events: ConversationEvent) -> None:
        self._write(self.storage.update_conversation(self._snapshot(conv), list(events)))

    # Connections --------------------------------------------------------------------------
    async def attach(self, conn: Connection) -> dict[str, Any]:
        """Register an authenticated connection and return the `welcome` payload."""
        principal = conn.principal
        if principal.role is Role.STAFF:
            live = self.staff.get(principal.subject)
            if live is None:
                raise ProtocolError(ErrorCode.FORBIDDEN,
                                    f"unknown staff member {principal.subject!r}")
            live.connections[conn.conn_id] = conn
            live.lost_at = None
            self._staff_conns[conn.conn_id] = conn
            self._attached[conn.conn_id] = conn
            self.heartbeats.beat(conn.conn_id, self.clock())
            self.metrics.ws_connections.labels("staff").inc()
            return {
                "staff": staff_public(live.member),
                "presence": live.presence.value,
                "conversations": [self._summary(self.conversations[c])
                                  for c in sorted(live.conversations)],
                "queue": self._queue_for(live.member),
            }
        if principal.role is Role.SHOPPER:
            await self.flush()
            recent = await self.storage.list_conversations(shopper_id=principal.subject,
                                                           limit=20)
            self.shoppers.setdefault(principal.subject, {})[conn.conn_id] = conn
            self._attached[conn.conn_id] = conn
            self.metrics.ws_connections.labels("shopper").inc()
            return {"conversations": [self._summary(self.conversations.get(c.id, c))
                                      for c in recent]}
        self._attached[conn.conn_id] = conn
        self.metrics.ws_connections.labels(principal.role.value).inc()
        return {}

    async def detach(self, conn: Connection) -> None:
        """Forget a closed connection; a staff member with no device left leaves routing."""
        principal = conn.principal
        if self._attached.pop(conn.conn_id, None) is None:
            return  # already detached (heartbeat expiry detaches before the socket ends)
        self.metrics.ws_connections.labels(principal.role.value).dec()
        if principal.role is Role.SHOPPER:
            conns = self.shoppers.get(principal.subject, {})
            conns.pop(conn.conn_id, None)
            if not conns:
                self.shoppers.pop(principal.subject, None)
            return
        if principal.role is not Role.STAFF:
            return
        self._staff_conns.pop(conn.conn_id, None)
        self.heartbeats.forget(conn.conn_id)
        live = self.staff.get(principal.subject)
        if live is None or live.connections.pop(conn.conn_id, None) is None:
            return
        if live.connections:
            return
        now = self.clock()
        if live.presence is not Presence.OFFLINE:
            self._set_presence(live, Presence.OFFLINE, now)
        self._withdraw_offers(live, now, reason="staff_offline")
        if any(self.conversations[c].state is ConversationState.ACCEPTED
               for c in live.conversations):
            live.lost_at = now
        self._drain(now)
        await self._settle(strict=False)

    def touch(self, conn: Connection) -> None:
        """Any inbound message proves the device is alive."""
        if conn.conn_id in self._staff_conns:
            self.heartbeats.beat(conn.conn_id, self.clock())

    async def handle(self, conn: Connection, msg: Inbound) -> dict[str, Any]:
        handler = self._handlers.get(msg.type)
        if handler is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"{msg.type} is not valid now")
        if self.draining and msg.type in _NEW_WORK:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN,
                                "this server is restarting: try again in a few seconds")
        result = await handler(conn, msg)
        await self._settle()
        return result

    # Sending ------------------------------------------------------------------------------
    def _send_shopper(self, shopper_id: str, message: dict[str, Any],
                      skip: Connection | None = None) -> None:
        for conn in self.shoppers.get(shopper_id, {}).values():
            if conn is not skip:
                conn.send(message)

    def _send_staff(self, staff_id: str | None, message: dict[str, Any],
                    skip: Connection | None = None) -> None:
        live = self.staff.get(staff_id or "")
        if live is not None:
            for conn in live.connections.values():
                if conn is not skip:
                    conn.send(message)

    def _send_both(self, conv: Conversation, message: dict[str, Any],
                   skip: Connection | None = None) -> None:
        self._send_shopper(conv.shopper_id, message, skip)
        if conv.state is ConversationState.ACCEPTED:
            self._send_staff(conv.staff_id, message, skip)

    def notify_participant(self, participant_id: str, message: dict[str, Any]) -> None:
        """Delivery callback handed to the media backend."""
        if message.get("type") == "media.sources":
            # The SFU knows participant ids; clients label tiles with names.
            message = {**message, "sources": [
                {**source, "name": self._display_name(source["participant_id"])}
                for source in message.get("sources", [])]}
        role, _, subject = participant_id.partition(":")
        if role == Role.SHOPPER.value:
            self._send_shopper(subject, message)
        elif role == Role.STAFF.value:
            self._send_staff(subject, message)

    def _display_name(self, participant_id: str) -> str | None:
        """A staff member's name; None for shoppers (clients call them "Shopper")."""
        role, _, subject = participant_id.partition(":")
        if role != Role.STAFF.value:
            return None
        staff = self.staff.get(subject)
        return staff.member.name if staff is not None else subject

    # Views --------------------------------------------------------------------------------
    def _summary(self, conv: Conversation) -> dict[str, Any]:
        ctx = conv.context
        staff = self.staff.get(conv.staff_id or "")
        out: dict[str, Any] = {
            "conversation_id": conv.id, "state": conv.state.value, "shopper_id": conv.shopper_id,
            "store": ctx.store_id, "skill": ctx.skill, "language": ctx.language,
            "channel": ctx.channel.value, "page_url": ctx.page_url, "sku": ctx.sku,
            "opened_at": conv.opened_at, "queued_at": conv.queued_at, "closed_at": conv.closed_at,
            "staff": ({"id": staff.member.id, "name": staff.member.name}
                      if staff and conv.state is ConversationState.ACCEPTED else None),
        }
        if conv.id in self.queue:
            out.update(self._queue_info(conv))
        call_id = self._call_of.get(conv.id)
        if call_id:
            out["call"] = self._call_public(self._calls[call_id])
        return out

    def _queue_info(self, conv: Conversation) -> dict[str, Any]:
        position = self.queue.position(conv.id)
        slots = sum(c.staff.max_conversations for c in matching(
            conv.context, self._candidates(), overflow=self._overflow(conv.context),
            need_free_slot=False))
        wait = estimate_wait_s(position, slots, self.handle_time.value)
        return {"position": position,
                "estimated_wait_s": None if wait is None else round(wait, 1)}

    @staticmethod
    def _call_public(call: Call) -> dict[str, Any]:
        return {"call_id": call.id, "conversation_id": call.conversation_id,
                "kind": call.kind.value, "proposed_by": call.proposed_by,
                "started_at": call.started_at, "ended_at": call.ended_at}

    def _queue_for(self, member: StaffMember) -> list[dict[str, Any]]:
        """Queued conversations this staff member could take, oldest first."""
        now = self.clock()
        out = []
        for entry in self.queue:
            ctx = entry.ctx
            if not self._could_take(member, ctx):
                continue
            conv = self.conversations[entry.conversation_id]
            out.append({**self._summary(conv), "waiting_s": round(now - conv.opened_at, 1)})
        return out

    def _could_take(self, member: StaffMember, ctx: ConversationContext) -> bool:
        probe = Candidate(member, Presence.ONLINE, 0, 0.0)
        if not can_serve(probe, ctx, need_free_slot=False):
            return False
        return (ctx.store_id is None or ctx.store_id == member.store_id
                or self._overflow(ctx))

    def availability(self, ctx: ConversationContext) -> Availability:
        return compute_availability(ctx, self._candidates(), overflow=self._overflow(ctx))

    # Routing ------------------------------------------------------------------------------
    def _candidates(self) -> list[Candidate]:
        return [Candidate(s.member, s.presence, len(s.conversations), s.last_activity_at)
                for s in self.staff.values()]

    def _overflow(self, ctx: ConversationContext) -> bool:
        if not self.settings.allow_overflow:
            return False
        store = self.stores.get(ctx.store_id or "")
        return store.overflow if store is not None else True

    def _enqueue(self, conv: Conversation, now: float) -> None:
        if conv.id not in self.queue:
            self.queue.push(conv.id, conv.context, conv.queued_at or now)
        self._waiting_since.setdefault(conv.id, now)
        self._queue_dirty = True

    def _route(self, conv: Conversation, now: float) -> None:
        """Offer the conversation to the best staff member, or (keep it) in the queue.

        Staff who declined (or let the offer lapse) are skipped while anyone else can take
        it; once it has waited offer_timeout_s since then, they are asked again rather than
        letting the shopper wait until the conversation is missed.
        """
        candidates = self._candidates()
        overflow = self._overflow(conv.context)
        member = choose_staff(conv.context, candidates, exclude=conv.declined_by,
                              overflow=overflow)
        declined_at = self._declined_at.get(conv.id)
        if member is None and declined_at is not None \
                and now - declined_at >= self.settings.offer_timeout_s:
            member = choose_staff(conv.context, candidates, overflow=overflow)
        if member is None:
            if conv.state is not ConversationState.QUEUED or conv.id not in self.queue:
                conv.state, conv.staff_id = ConversationState.QUEUED, None
                conv.queued_at = conv.queued_at or now
                self._enqueue(conv, now)
                self._save(conv, self._event(conv, EventKind.QUEUED, now))
            return
        if self.queue.remove(conv.id):
            self._queue_dirty = True
        conv.state, conv.staff_id = ConversationState.ASSIGNED, member.id
        live = self.staff[member.id]
        live.conversations.add(conv.id)
        live.last_activity_at = now
        deadline = now + self.settings.offer_timeout_s
        self._offer_deadline[conv.id] = deadline
        self._save(conv, self._event(conv, EventKind.ASSIGNED, now, staff_id=member.id))
        self._send_staff(member.id, {"type": "conversation.offered",
                                     "conversation": self._summary(conv),
                                     "expires_at": deadline})

    def _drain(self, now: float) -> None:
        """Give queued conversations to staff who became free, oldest first."""
        for entry in list(self.queue):
            if not any(s.presence is Presence.ONLINE
                       and len(s.conversations) < s.member.max_conversations
                       for s in self.staff.values()):
                return
            conv = self.conversations.get(entry.conversation_id)
            if conv is not None:
                self._route(conv, now)

    def _release(self, conv: Conversation, now: float) -> None:
        """Free the staff slot a conversation held."""
        self._offer_deadline.pop(conv.id, None)
        live = self.staff.get(conv.staff_id or "")
        if live is not None and conv.id in live.conversations:
            live.conversations.discard(conv.id)
            live.last_activity_at = now
        self._queue_dirty = True

    def _withdraw_offers(self, live: StaffLive, now: float, *, reason: str) -> None:
        """A staff member who cannot take offers any more: re-route what they were offered."""
        for cid in sorted(live.conversations):
            conv = self.conversations[cid]
            if conv.state is ConversationState.ASSIGNED:
                self._release(conv, now)
                self._save(conv, self._event(conv, EventKind.OFFER_EXPIRED, now,
                                             staff_id=live.member.id, reason=reason))
                self._send_staff(live.member.id, {"type": "conversation.offer_withdrawn",
                                                  "conversation_id": cid, "reason": reason})
                self._route(conv, now)

    def _requeue(self, conv: Conversation, now: float, kind: EventKind, **data: Any) -> None:
        """Put a conversation that lost its staff member back in the queue, near the front."""
        self._end_call(conv, now, reason="staff_left")
        self._release(conv, now)
        self._accepted_at.pop(conv.id, None)
        conv.state, conv.staff_id = ConversationState.QUEUED, None
        conv.queued_at = conv.queued_at or conv.opened_at
        self._waiting_since[conv.id] = now
        self._save(conv, self._event(conv, kind, now, **data))
        self._send_shopper(conv.shopper_id, {"type": "conversation.requeued",
                                             "conversation_id": conv.id, "reason": kind.value})
        self._route(conv, now)
        if conv.id in self.queue:
            self._send_shopper(conv.shopper_id, {"type": "queue.position",
                                                 "conversation_id": conv.id,
                                                 **self._queue_info(conv)})

    # Presence -----------------------------------------------------------------------------
    def _set_presence(self, live: StaffLive, presence: Presence, now: float) -> None:
        if presence is Presence.ONLINE and live.presence is not Presence.ONLINE:
            live.last_activity_at = now
        live.presence = presence
        self._write(self.storage.record_presence(live.member.id, presence, now))
        self._send_staff(live.member.id, {"type": "presence.changed", "status": presence.value})
        self._queue_dirty = True
        self._update_gauges()

    async def _on_presence_set(self, conn: Connection, msg: PresenceSet) -> dict[str, Any]:
        live = self.staff[conn.principal.subject]
        now = self.clock()
        if msg.status is not live.presence:
            self._set_presence(live, msg.status, now)
        if msg.status is Presence.ONLINE:
            self._drain(now)
        else:
            self._withdraw_offers(live, now, reason=f"staff_{msg.status.value}")
            if msg.status is Presence.OFFLINE:
                for cid in sorted(live.conversations):
                    self._requeue(self.conversations[cid], now, EventKind.STAFF_LOST,
                                  staff_id=live.member.id, reason="staff_offline")
        return {"status": live.presence.value}

    async def _on_queue_list(self, conn: Connection, msg: Inbound) -> dict[str, Any]:
        return {"queue": self._queue_for(self.staff[conn.principal.subject].member)}

    # Conversations ------------------------------------------------------------------------
    def _live(self, conversation_id: str) -> Conversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            raise ProtocolError(ErrorCode.NOT_FOUND,
                                f"no open conversation {conversation_id!r}")
        return conv

    async def _any(self, conversation_id: str) -> Conversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            await self.flush()
            conv = await self.storage.get_conversation(conversation_id)
        if conv is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no conversation {conversation_id!r}")
        return conv

    @staticmethod
    def _check_party(conn: Connection, conv: Conversation, *, accepted: bool = True) -> None:
        """Only the conversation's shopper and its accepted staff member may act on it.

        A refusal says "not found" rather than "forbidden" so ids cannot be probed.
        """
        p = conn.principal
        if p.role is Role.SHOPPER and conv.shopper_id == p.subject:
            return
        if p.role is Role.STAFF and conv.staff_id == p.subject and (
            not accepted or conv.state is ConversationState.ACCEPTED
        ):
            return
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no conversation {conv.id!r}")

    async def _on_open(self, conn: Connection, msg: ConversationOpen) -> dict[str, Any]:
        shopper = conn.principal.subject
        live_count = sum(1 for c in self.conversations.values() if c.shopper_id == shopper)
        if live_count >= MAX_LIVE_CONVERSATIONS_PER_SHOPPER:
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                f"at most {MAX_LIVE_CONVERSATIONS_PER_SHOPPER} open "
                                "conversations per shopper")
        if msg.store is not None and msg.store not in self.stores:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"unknown store {msg.store!r}")
        skill, qualified = msg.skill, False
        if skill is None and msg.answers:
            if self.questions is None:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                    "this shop has no qualification questions")
            try:
                skill = self.questions.pick_skill(msg.answers)
            except QualificationError as exc:
                raise ProtocolError(ErrorCode.INVALID_MESSAGE, str(exc)) from None
            qualified = True
        now = self.clock()
        ctx = ConversationContext(store_id=msg.store, page_url=msg.page_url, sku=msg.sku,
                                  skill=skill, language=msg.language, channel=msg.channel)
        conv = Conversation(id=_new_id("cnv"), shopper_id=shopper, context=ctx,
                            state=ConversationState.QUEUED, opened_at=now)
        opened = self._event(conv, EventKind.OPENED, now, actor_of(conn.principal),
                             qualified_skill=skill if qualified else None)
        await self._stored(self.storage.create_conversation(self._snapshot(conv), [opened]))
        self.conversations[conv.id] = conv
        self._waiting_since[conv.id] = now
        self.metrics.conversations_opened.labels(ctx.store_id or ANY_STORE,
                                                 ctx.channel.value).inc()
        self._route(conv, now)
        return {"conversation": self._summary(conv)}

    async def _stored(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except StorageError as exc:
            log.error("storage failed: %s", exc)
            raise ProtocolError(ErrorCode.STORAGE_FAILED, "the change could not be stored") \
                from None

    async def _on_resume(self, conn: Connection, msg: ConversationResume) -> dict[str, Any]:
        conv = await self._any(msg.conversation_id)
        self._check_party(conn, conv, accepted=False)
        await self.flush()
        messages = await self.storage.list_messages(conv.id, msg.after_seq)
        asyncs = await self.storage.list_async_messages(conversation_id=conv.id)
        result: dict[str, Any] = {"conversation": self._summary(conv),
                                  "messages": [message_public(m) for m in messages],
                                  "async_messages": [async_public(a) for a in asyncs]}
        # A device coming back mid-call (a reloaded page, a second tab) needs the same join
        # information call.started gave, or it cannot offer media again.
        call = self._calls.get(self._call_of.get(conv.id, ""))
        if call is not None and call.media_session_id is not None and call.ended_at is None \
                and (conn.principal.role is Role.SHOPPER
                     or conv.state is ConversationState.ACCEPTED):
            result["join"] = self._join_info(call.media_session_id,
                                                  actor_of(conn.principal))
        return result

    async def _on_accept(self, conn: Connection, msg: ConversationAccept) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv, accepted=False)
        if conv.state is not ConversationState.ASSIGNED:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"conversation is {conv.state.value}")
        now = self.clock()
        self._offer_deadline.pop(conv.id, None)
        self._waiting_since.pop(conv.id, None)
        self._declined_at.pop(conv.id, None)
        conv.state = ConversationState.ACCEPTED
        self._accepted_at[conv.id] = now
        self._save(conv, self._event(conv, EventKind.ACCEPTED, now, actor_of(conn.principal)))
        self.metrics.queue_wait.labels(conv.context.store_id or ANY_STORE).observe(
            now - conv.opened_at)
        member = self.staff[conn.principal.subject].member
        self._send_shopper(conv.shopper_id, {
            "type": "conversation.accepted", "conversation_id": conv.id,
            "staff": {"id": member.id, "name": member.name}})
        self._send_staff(member.id, {"type": "conversation.accepted",
                                     "conversation_id": conv.id,
                                     "staff": {"id": member.id, "name": member.name}},
                         skip=conn)
        messages = await self.storage.list_messages(conv.id)
        return {"conversation": self._summary(conv),
                "messages": [message_public(m) for m in messages]}

    async def _on_decline(self, conn: Connection, msg: ConversationDecline) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv, accepted=False)
        if conv.state is not ConversationState.ASSIGNED:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"conversation is {conv.state.value}")
        now = self.clock()
        self._release(conv, now)
        conv.declined_by.add(conn.principal.subject)
        self._declined_at[conv.id] = now
        self._save(conv, self._event(conv, EventKind.DECLINED, now, actor_of(conn.principal),
                                     reason=msg.reason))
        self._send_staff(conn.principal.subject, {"type": "conversation.offer_withdrawn",
                                                  "conversation_id": conv.id,
                                                  "reason": "declined"}, skip=conn)
        self._route(conv, now)
        return {}

    async def _on_transfer(self, conn: Connection, msg: ConversationTransfer) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv)
        me = conn.principal.subject
        now = self.clock()
        if msg.to_staff is not None:
            target = self.staff.get(msg.to_staff)
            if target is None or target.member.id == me:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no colleague {msg.to_staff!r}")
            if (target.presence is not Presence.ONLINE
                    or len(target.conversations) >= target.member.max_conversations):
                raise ProtocolError(ErrorCode.INVALID_STATE,
                                    f"{target.member.name} cannot take a conversation now")
            self._end_call(conv, now, reason="transferred")
            self._release(conv, now)
            self._accepted_at.pop(conv.id, None)
            conv.declined_by.add(me)
            conv.state, conv.staff_id = ConversationState.ASSIGNED, target.member.id
            target.conversations.add(conv.id)
            target.last_activity_at = now
            deadline = now + self.settings.offer_timeout_s
            self._offer_deadline[conv.id] = deadline
            self._save(conv, self._event(conv, EventKind.TRANSFERRED, now, actor_of(conn.principal),
                                         to_staff=target.member.id))
            self._send_staff(target.member.id, {"type": "conversation.offered",
                                                "conversation": self._summary(conv),
                                                "expires_at": deadline, "transferred_by": me})
            notice = {"to_staff": {"id": target.member.id, "name": target.member.name}}
        else:
            self._end_call(conv, now, reason="transferred")
            self._release(conv, now)
            self._accepted_at.pop(conv.id, None)
            conv.declined_by.add(me)
            conv.context = dataclasses.replace(conv.context, skill=msg.to_skill)
            conv.state, conv.staff_id = ConversationState.QUEUED, None
            self._waiting_since[conv.id] = now
            self._save(conv, self._event(conv, EventKind.TRANSFERRED, now,
                                         actor_of(conn.principal), to_skill=msg.to_skill))
            self._route(conv, now)
            notice = {"to_skill": msg.to_skill}
        self._send_shopper(conv.shopper_id, {"type": "conversation.transferred",
                                             "conversation_id": conv.id, **notice})
        return {"conversation": self._summary(conv)}

    async def _on_close(self, conn: Connection, msg: ConversationClose) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv)
        self._close(conv, self.clock(), actor_of(conn.principal))
        return {"conversation": self._summary(conv)}

    def _close(self, conv: Conversation, now: float, by: str) -> None:
        was = conv.state
        self._end_call(conv, now, reason="conversation_closed")
        if self.queue.remove(conv.id):
            self._queue_dirty = True
        self._release(conv, now)
        accepted_at = self._accepted_at.pop(conv.id, None)
        if accepted_at is not None:
            self.handle_time.observe(now - accepted_at)
        self._waiting_since.pop(conv.id, None)
        self._declined_at.pop(conv.id, None)
        conv.state, conv.closed_at = ConversationState.CLOSED, now
        self._save(conv, self._event(conv, EventKind.CLOSED, now, by, previous_state=was.value))
        notice = {"type": "conversation.closed", "conversation_id": conv.id, "by": by}
        self._send_shopper(conv.shopper_id, notice)
        if was is ConversationState.ACCEPTED:
            self._send_staff(conv.staff_id, notice)
            self._send_shopper(conv.shopper_id, {"type": "feedback.requested",
                                                 "conversation_id": conv.id})
        elif was is ConversationState.ASSIGNED:
            self._send_staff(conv.staff_id, {"type": "conversation.offer_withdrawn",
                                             "conversation_id": conv.id,
                                             "reason": "closed_by_shopper"})
        self.metrics.conversations_closed.labels(conv.context.store_id or ANY_STORE,
                                                 conv.context.channel.value).inc()
        del self.conversations[conv.id]
        self._drain(now)

    def _miss(self, conv: Conversation, now: float, *, left_message: bool = False) -> None:
        """Nobody took the conversation in time, or (`left_message`) the shopper stopped
        waiting and left a message instead."""
        if self.queue.remove(conv.id):
            self._queue_dirty = True
        self._waiting_since.pop(conv.id, None)
        self._declined_at.pop(conv.id, None)
        conv.state = ConversationState.MISSED
        details: dict[str, Any] = {"waited_s": round(now - conv.opened_at, 3)}
        if left_message:
            details["left_message"] = True
        self._save(conv, self._event(conv, EventKind.MISSED, now, **details))
        self._send_shopper(conv.shopper_id, {"type": "conversation.missed",
                                             "conversation_id": conv.id,
                                             "async_available": not left_message})
        self.metrics.conversations_missed.labels(conv.context.store_id or ANY_STORE,
                                                 conv.context.channel.value).inc()
        del self.conversations[conv.id]

    # Chat ---------------------------------------------------------------------------------
    async def _on_chat_send(self, conn: Connection, msg: ChatSend) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv)
        p = conn.principal
        if msg.card is not None and p.role is not Role.STAFF:
            raise ProtocolError(ErrorCode.FORBIDDEN, "only staff send product cards")
        if msg.text is not None and len(msg.text) > self.settings.max_text_chars:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                                f"text: at most {self.settings.max_text_chars} characters")
        message = ChatMessage(
            conversation_id=conv.id, seq=0, sender_role=SenderRole(p.role.value),
            sender_id=p.subject, kind=MessageKind.PRODUCT_CARD if msg.card else MessageKind.TEXT,
            text=msg.text, card=msg.card.model_dump(exclude_none=True) if msg.card else None,
            at=self.clock(), client_id=msg.id)
        stored = await self._stored(self.storage.add_message(message))
        public = message_public(stored)
        if stored.at == message.at:  # a resend returns the earlier copy: not fanned out again
            self._send_both(conv, {"type": "chat.message", "message": public}, skip=conn)
        return {"message": public}

    async def _on_chat_relay(self, conn: Connection, msg: ChatTyping | ChatRead
                             ) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv)
        event = msg.model_dump(exclude={"id", "v"})
        event["from"] = conn.principal.role.value
        self._send_both(conv, event, skip=conn)
        return {}

    # Calls --------------------------------------------------------------------------------
    def _call(self, conn: Connection, call_id: str) -> tuple[Call, Conversation]:
        call = self._calls.get(call_id)
        conv = self.conversations.get(call.conversation_id) if call else None
        if call is None or conv is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no call {call_id!r}")
        if not self._is_guest(conn, call.id):
            self._check_party(conn, conv)
        return call, conv

    def _is_guest(self, conn: Connection, call_id: str) -> bool:
        p = conn.principal
        return p.role is Role.STAFF and p.subject in self._guests.get(call_id, ())

    async def _on_call_propose(self, conn: Connection, msg: CallPropose) -> dict[str, Any]:
        conv = self._live(msg.conversation_id)
        self._check_party(conn, conv)
        if conv.state is not ConversationState.ACCEPTED:
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                "a call needs a staff member who accepted the conversation")
        if conv.id in self._call_of:
            raise ProtocolError(ErrorCode.INVALID_STATE, "a call is already proposed or running")
        staff = self.staff[conv.staff_id or ""].member
        if Channel(msg.kind.value) not in staff.channels:
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                f"{staff.name} cannot take {msg.kind.value} calls")
        now = self.clock()
        call = Call(id=_new_id("call"), conversation_id=conv.id, kind=msg.kind,
                    proposed_by=actor_of(conn.principal), proposed_at=now)
        self._calls[call.id] = call
        self._call_of[conv.id] = call.id
        self._write(self.storage.upsert_call(dataclasses.replace(call), [self._event(
            conv, EventKind.ESCALATED, now, call.proposed_by, call_id=call.id,
            kind=call.kind.value)]))
        self._send_both(conv, {"type": "call.proposed", "call": self._call_public(call)},
                        skip=conn)
        return {"call": self._call_public(call)}

    async def _on_call_accept(self, conn: Connection, msg: CallAccept) -> dict[str, Any]:
        call, conv = self._call(conn, msg.call_id)
        if call.started_at is not None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has already started")
        if call.proposed_by == actor_of(conn.principal):
            raise ProtocolError(ErrorCode.INVALID_STATE, "the other side accepts a call")
        session_id = _new_id("ms")
        participants = (f"shopper:{conv.shopper_id}", f"staff:{conv.staff_id}")
        try:
            await self.media.create_session(MediaSessionSpec(
                session_id, conv.id, call.id, call.kind, conv.context.store_id, participants))
        except MediaUnavailable as exc:
            raise ProtocolError(ErrorCode.MEDIA_UNAVAILABLE, str(exc)) from None
        if self._calls.get(call.id) is not call or call.ended_at is not None:
            await self.media.close_session(session_id)  # cancelled while we waited
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call was cancelled")
        now = self.clock()
        call.started_at, call.media_session_id = now, session_id
        self._write(self.storage.upsert_call(dataclasses.replace(call), [self._event(
            conv, EventKind.CALL_STARTED, now, actor_of(conn.principal), call_id=call.id,
            kind=call.kind.value, media_session_id=session_id)]))
        self.metrics.calls_started.labels(call.kind.value).inc()
        for participant in participants:
            self.notify_participant(participant, {
                "type": "call.started", "call": self._call_public(call),
                "join": self._join_info(session_id, participant)})
        return {"call": self._call_public(call),
                "join": self._join_info(session_id, actor_of(conn.principal))}

    async def _on_call_decline(self, conn: Connection, msg: CallDecline) -> dict[str, Any]:
        call, conv = self._call(conn, msg.call_id)
        if call.started_at is not None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has started: end it instead")
        if call.proposed_by == actor_of(conn.principal):
            raise ProtocolError(ErrorCode.INVALID_STATE, "cancel your own proposal with call.end")
        now = self.clock()
        call.ended_at = now
        self._forget_call(call)
        self._write(self.storage.upsert_call(dataclasses.replace(call), [self._event(
            conv, EventKind.CALL_DECLINED, now, actor_of(conn.principal), call_id=call.id)]))
        self._send_both(conv, {"type": "call.declined", "call_id": call.id}, skip=conn)
        return {"call": self._call_public(call)}

    async def _on_call_end(self, conn: Connection, msg: CallEnd) -> dict[str, Any]:
        call, conv = self._call(conn, msg.call_id)
        if self._is_guest(conn, call.id):  # a colleague hanging up leaves; the call goes on
            return await self._leave_call(conn, call, conv)
        self._end_call(conv, self.clock(), reason="hung_up", by=actor_of(conn.principal))
        return {"call": self._call_public(call)}

    def _forget_call(self, call: Call) -> None:
        self._camera_off.pop(call.id, None)
        self._calls.pop(call.id, None)
        self._call_of.pop(call.conversation_id, None)

    def _end_call(self, conv: Conversation, now: float, *, reason: str,
                  by: str | None = None) -> None:
        call_id = self._call_of.get(conv.id)
        if call_id is None:
            return
        call = self._calls[call_id]
        call.ended_at = now
        self._forget_call(call)
        duration = None if call.started_at is None else round(now - call.started_at, 3)
        self._write(self.storage.upsert_call(dataclasses.replace(call), [self._event(
            conv, EventKind.CALL_ENDED, now, by, call_id=call.id, reason=reason,
            duration_s=duration)]))
        if call.media_session_id is not None:
            # Read before closing: the session's counters go with it. Kept with the call so
            # reports can join media quality to business results.
            quality = self.media.call_quality(call.media_session_id)
            if quality is not None:
                self._write(self.storage.record_call_quality(call.id, quality, now))
            self._write(self.media.close_session(call.media_session_id))
        notice = {"type": "call.ended", "call_id": call.id, "reason": reason}
        self._send_shopper(conv.shopper_id, notice)
        self._send_staff(conv.staff_id, notice)
        for staff_id in self._guests.pop(call.id, set()) | self._invited.pop(call.id, set()):
            self._send_staff(staff_id, notice)

    # Colleagues joining a call ------------------------------------------------------------
    MAX_GUESTS = 2  # besides the shopper and the staff member: a store tablet's screen

    async def _on_call_invite(self, conn: Connection, msg: CallInvite) -> dict[str, Any]:
        """The call's staff member brings in a colleague of the same store (a specialist, a
        manager) who is online; they are told and may join."""
        call, conv = self._call(conn, msg.call_id)
        if self._is_guest(conn, call.id):
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                "only the staff member who has the call can invite")
        if call.media_session_id is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has not started")
        target = self.staff.get(msg.staff_id)
        if target is None or msg.staff_id == conn.principal.subject:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no colleague {msg.staff_id!r} to invite")
        store = conv.context.store_id or self.staff[conv.staff_id or ""].member.store_id
        if target.member.store_id != store:
            raise ProtocolError(ErrorCode.FORBIDDEN,
                                f"{target.member.name} works in another store")
        if target.presence is not Presence.ONLINE or not target.connections:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"{target.member.name} is not online")
        guests, invited = self._guests.get(call.id, set()), self._invited.setdefault(call.id, set())
        if msg.staff_id in guests:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"{target.member.name} already joined")
        if len(guests | invited | {msg.staff_id}) > self.MAX_GUESTS:
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                f"at most {self.MAX_GUESTS} colleagues can join a call")
        invited.add(msg.staff_id)
        inviter = self.staff[conn.principal.subject].member
        self._send_staff(msg.staff_id, {
            "type": "call.invited", "call": self._call_public(call),
            "from": {"id": inviter.id, "name": inviter.name},
            "conversation": self.conversation_view(conv)})
        return {"call_id": call.id, "invited": msg.staff_id}

    async def _on_call_join(self, conn: Connection, msg: CallJoin) -> dict[str, Any]:
        staff_id = conn.principal.subject
        call = self._calls.get(msg.call_id)
        conv = self.conversations.get(call.conversation_id) if call else None
        if call is None or conv is None or staff_id not in self._invited.get(call.id, ()):
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no invitation to call {msg.call_id!r}")
        if call.media_session_id is None or call.ended_at is not None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call is not running")
        try:
            await self.media.add_participant(call.media_session_id, f"staff:{staff_id}")
        except MediaUnavailable as exc:
            raise ProtocolError(ErrorCode.MEDIA_UNAVAILABLE, str(exc)) from None
        self._invited[call.id].discard(staff_id)
        self._guests.setdefault(call.id, set()).add(staff_id)
        member = self.staff[staff_id].member
        now = self.clock()
        self._write(self.storage.update_conversation(self._snapshot(conv), [self._event(
            conv, EventKind.CALL_JOINED, now, actor_of(conn.principal), call_id=call.id)]))
        notice = {"type": "call.joined", "call_id": call.id,
                  "participant": f"staff:{staff_id}", "name": member.name}
        self._send_call(call, conv, notice, skip_staff=staff_id)
        return {"call": self._call_public(call), "conversation": self.conversation_view(conv),
                "join": self._join_info(call.media_session_id, f"staff:{staff_id}")}

    async def _on_call_leave(self, conn: Connection, msg: CallLeave) -> dict[str, Any]:
        call, conv = self._call(conn, msg.call_id)
        if not self._is_guest(conn, call.id):
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                "only a colleague who joined leaves; end the call instead")
        return await self._leave_call(conn, call, conv)

    async def _leave_call(self, conn: Connection, call: Call, conv: Conversation
                          ) -> dict[str, Any]:
        staff_id = conn.principal.subject
        self._guests.get(call.id, set()).discard(staff_id)
        if call.media_session_id is not None:
            await self.media.remove_participant(call.media_session_id, f"staff:{staff_id}")
        self._write(self.storage.update_conversation(self._snapshot(conv), [self._event(
            conv, EventKind.CALL_LEFT, self.clock(), actor_of(conn.principal),
            call_id=call.id)]))
        self._send_call(call, conv, {"type": "call.left", "call_id": call.id,
                                     "participant": f"staff:{staff_id}",
                                     "name": self._display_name(f"staff:{staff_id}")},
                        skip_staff=staff_id)
        return {"call_id": call.id, "left": True}

    def _send_call(self, call: Call, conv: Conversation, message: dict[str, Any], *,
                   skip_staff: str | None = None) -> None:
        """Everyone in a call: the shopper, its staff member and the colleagues who joined."""
        self._send_shopper(conv.shopper_id, message)
        for staff_id in {conv.staff_id or "", *self._guests.get(call.id, ())} - {skip_staff}:
            self._send_staff(staff_id, message)

    async def _on_media_offer(self, conn: Connection, msg: MediaOffer) -> dict[str, Any]:
        call, _ = self._call(conn, msg.call_id)
        if call.media_session_id is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has not started")
        actor = actor_of(conn.principal)
        try:
            sdp = await self.media.offer(call.media_session_id, actor, msg.sdp)
        except MediaUnavailable as exc:
            raise ProtocolError(ErrorCode.MEDIA_UNAVAILABLE, str(exc)) from None
        except MediaNegotiationError as exc:
            raise ProtocolError(ErrorCode.NEGOTIATION_FAILED, str(exc)) from None
        # A device joining (or rejoining after a reload) learns whose camera is off.
        for other in sorted(self._camera_off.get(call.id, set()) - {actor}):
            conn.send({"type": "media.state", "call_id": call.id, "participant_id": other,
                       "camera": "off"})
        return {"call_id": call.id, "sdp": sdp}

    def _join_info(self, session_id: str, participant_id: str) -> dict[str, Any]:
        """The media backend's join information plus this participant's ICE servers (TURN
        credentials minted for it alone when a relay is configured)."""
        info = self.media.join_info(session_id, participant_id)
        info["ice_servers"] = self.ice.for_participant(participant_id) \
            if info.get("media_available") else []
        return info

    async def _on_media_candidate(self, conn: Connection, msg: MediaCandidate) -> dict[str, Any]:
        call, _ = self._call(conn, msg.call_id)
        if call.media_session_id is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has not started")
        try:
            await self.media.add_candidate(
                call.media_session_id, actor_of(conn.principal),
                IceCandidate(msg.candidate, msg.sdp_mid, msg.sdp_mline_index, msg.ufrag))
        except MediaUnavailable as exc:
            raise ProtocolError(ErrorCode.MEDIA_UNAVAILABLE, str(exc)) from None
        except MediaNegotiationError as exc:
            raise ProtocolError(ErrorCode.NEGOTIATION_FAILED, str(exc)) from None
        return {"call_id": call.id}

    async def _on_media_connection(self, conn: Connection,
                                   msg: MediaConnection) -> dict[str, Any]:
        call, _ = self._call(conn, msg.call_id)
        if call.media_session_id is not None:
            self.media.connection_report(call.media_session_id, actor_of(conn.principal),
                                         ConnectionReport(
                                             msg.state, msg.candidate_type, msg.protocol,
                                             msg.relay_protocol,
                                             tuple((e.url, e.code, e.text) for e in msg.errors)))
        return {"call_id": call.id}

    async def _on_media_state(self, conn: Connection, msg: MediaState) -> dict[str, Any]:
        call, conv = self._call(conn, msg.call_id)
        actor = actor_of(conn.principal)
        off = self._camera_off.setdefault(call.id, set())
        if msg.camera == "off":
            off.add(actor)
        else:
            off.discard(actor)
        self._send_call(call, conv, {"type": "media.state", "call_id": call.id,
                                     "participant_id": actor, "camera": msg.camera})
        return {"call_id": call.id, "camera": msg.camera}

    async def _on_media_answer(self, conn: Connection, msg: MediaAnswer) -> dict[str, Any]:
        call, _ = self._call(conn, msg.call_id)
        if call.media_session_id is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has not started")
        try:
            await self.media.answer(call.media_session_id, actor_of(conn.principal), msg.sdp)
        except MediaUnavailable as exc:
            raise ProtocolError(ErrorCode.MEDIA_UNAVAILABLE, str(exc)) from None
        except MediaNegotiationError as exc:
            raise ProtocolError(ErrorCode.NEGOTIATION_FAILED, str(exc)) from None
        return {"call_id": call.id}

    async def _on_tryon_set(self, conn: Connection, msg: TryOnSet) -> dict[str, Any]:
        """Virtual try-on on the shopper's camera (only they may send it: protocol roles).
        Both parties' other devices learn the new state, so the staff console can say
        that what it shows is a garment drawn on the shopper's image."""
        call, conv = self._call(conn, msg.call_id)
        if call.media_session_id is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "the call has not started")
        participant = actor_of(conn.principal)
        try:
            state = await self.media.set_tryon(call.media_session_id, participant,
                                               msg.garment_id if msg.enabled else None)
        except MediaUnavailable as exc:
            raise ProtocolError(ErrorCode.MEDIA_UNAVAILABLE, str(exc)) from None
        except TryOnUnavailable as exc:
            raise ProtocolError(ErrorCode.TRYON_UNAVAILABLE, str(exc)) from None
        except UnknownGarment as exc:
            raise ProtocolError(ErrorCode.UNKNOWN_GARMENT, str(exc)) from None
        public = {"call_id": call.id, "conversation_id": conv.id,
                  "participant_id": participant, "enabled": state["enabled"],
                  "garment": state["garment"]}
        if state["enabled"]:  # reports split video conversations with and without try-on
            garment = state["garment"] or {}
            self._write(self.storage.update_conversation(self._snapshot(conv), [self._event(
                conv, EventKind.TRYON, self.clock(), participant, call_id=call.id,
                garment_id=garment.get("id"), sku=garment.get("sku"))]))
        self._send_both(conv, {"type": "tryon.state", **public}, skip=conn)
        return public

    # After the conversation ---------------------------------------------------------------
    async def _on_feedback(self, conn: Connection, msg: FeedbackSubmit) -> dict[str, Any]:
        conv = await self._any(msg.conversation_id)
        self._check_party(conn, conv)
        if conv.state is not ConversationState.CLOSED:
            raise ProtocolError(ErrorCode.INVALID_STATE, "rate a conversation once it is closed")
        if await self.storage.get_rating(conv.id) is not None:
            raise ProtocolError(ErrorCode.INVALID_STATE, "this conversation is already rated")
        now = self.clock()
        rating = Rating(conv.id, msg.satisfaction, msg.recommendation, msg.comment, now)
        await self._stored(self.storage.add_rating(rating, [self._event(
            conv, EventKind.RATED, now, actor_of(conn.principal),
            satisfaction=msg.satisfaction, recommendation=msg.recommendation)]))
        return {"conversation_id": conv.id}

    async def _on_async_leave(self, conn: Connection, msg: AsyncLeave) -> dict[str, Any]:
        """A message left for later. Stored before it is acknowledged, whatever the shopper
        does next (a closed tab loses nothing): a conversation still waiting for someone
        (queued) ends as missed now, counted once, and the message goes with it. Sending
        the same message again (a retry after a lost ack) returns the stored one."""
        conv = await self._any(msg.conversation_id)
        self._check_party(conn, conv, accepted=False)
        now = self.clock()
        if conv.state in (ConversationState.QUEUED, ConversationState.ASSIGNED):
            if conv.state is ConversationState.ASSIGNED:  # offered: the offer is void now
                staff_id = conv.staff_id
                self._release(conv, now)
                self._send_staff(staff_id, {"type": "conversation.offer_withdrawn",
                                            "conversation_id": conv.id,
                                            "reason": "closed_by_shopper"})
            self._miss(conv, now, left_message=True)
            self._drain(now)  # the freed slot may take someone else waiting
            await self._settle()  # the missed state is durable before the message
        elif conv.state is not ConversationState.MISSED:
            raise ProtocolError(ErrorCode.INVALID_STATE,
                                "leave a message only while waiting for a specialist, or "
                                "when nobody could take the conversation")
        for existing in await self.storage.list_async_messages(conversation_id=conv.id):
            if existing.text == msg.text and existing.contact == msg.contact:
                return {"async_message": async_public(existing)}
        draft = AsyncMessage(id=0, conversation_id=conv.id, shopper_id=conv.shopper_id,
                             store_id=conv.context.store_id, skill=conv.context.skill,
                             text=msg.text, contact=msg.contact, created_at=now)
        stored = await self._stored(self.storage.add_async_message(draft, [self._event(
            conv, EventKind.ASYNC_LEFT, now, actor_of(conn.principal))]))
        # The consoles of those who may answer it refresh their inbox at once (no contact
        # details in the push).
        notice = {"type": "async.left", "async_message_id": stored.id,
                  "conversation_id": conv.id, "store": stored.store_id, "skill": stored.skill}
        for live in self.staff.values():
            if live.member.may_answer(stored.store_id, stored.skill):
                self._send_staff(live.member.id, notice)
        return {"async_message": async_public(stored)}

    async def answer_async(self, staff_id: str, message_id: int, answer: str) -> AsyncMessage:
        """Called by the HTTP API: store the answer and tell the shopper if connected."""
        now = self.clock()
        existing = await self.storage.get_async_message(message_id)
        if existing is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no asynchronous message {message_id}")
        event = ConversationEvent(existing.conversation_id, EventKind.ASYNC_ANSWERED, now,
                                  f"staff:{staff_id}", {"async_message_id": message_id})
        stored = await self._stored(self.storage.answer_async_message(
            message_id, answer, staff_id, now, [event]))
        if stored is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no asynchronous message {message_id}")
        self._send_shopper(stored.shopper_id, {"type": "async.answered",
                                               "async_message": async_public(stored)})
        return stored

    # Timers -------------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self.tick()
            except Exception:  # the ticker must outlive any single bad tick
                log.exception("switchboard tick failed")

    async def tick(self) -> None:
        now = self.clock()
        for conn_id in self.heartbeats.expired(now):
            conn = self._staff_conns.get(conn_id)
            if conn is not None:
                log.info("staff %s: no heartbeat, closing", conn.principal.subject)
                conn.close(4000, "heartbeat timeout")
                await self.detach(conn)
        for cid, deadline in list(self._offer_deadline.items()):
            conv = self.conversations.get(cid)
            if deadline <= now and conv is not None and conv.state is ConversationState.ASSIGNED:
                staff_id = conv.staff_id
                self._release(conv, now)
                conv.declined_by.add(staff_id or "")
                self._declined_at[cid] = now
                self._save(conv, self._event(conv, EventKind.OFFER_EXPIRED, now,
                                             staff_id=staff_id, reason="timeout"))
                self._send_staff(staff_id, {"type": "conversation.offer_withdrawn",
                                            "conversation_id": cid, "reason": "expired"})
                self._route(conv, now)
        missed_after = self.settings.missed_after_s
        for cid, since in list(self._waiting_since.items()):
            conv = self.conversations.get(cid)
            if conv is not None and conv.state is ConversationState.QUEUED \
                    and since + missed_after <= now:
                self._miss(conv, now)
        grace = self.settings.staff_reconnect_grace_s
        for live in self.staff.values():
            if live.lost_at is not None and live.lost_at + grace <= now and not live.connections:
                live.lost_at = None
                for cid in sorted(live.conversations):
                    self._requeue(self.conversations[cid], now, EventKind.STAFF_LOST,
                                  staff_id=live.member.id, reason="device_lost")
        if self._declined_at and len(self.queue):
            self._drain(now)
        if self._queue_dirty:
            self._queue_dirty = False
            self._push_queue_state()
        await self._settle(strict=False)

    def _push_queue_state(self) -> None:
        """Positions to waiting shoppers, queue snapshots to staff; batched per tick."""
        for entry in self.queue:
            conv = self.conversations[entry.conversation_id]
            if conv.shopper_id in self.shoppers:
                self._send_shopper(conv.shopper_id, {"type": "queue.position",
                                                     "conversation_id": conv.id,
                                                     **self._queue_info(conv)})
        for live in self.staff.values():
            if live.connections and live.presence is not Presence.OFFLINE:
                self._send_staff(live.member.id, {"type": "queue.snapshot",
                                                  "queue": self._queue_for(live.member)})
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.queue_length.set(len(self.queue))
        online: dict[str, int] = dict.fromkeys(self.stores, 0)
        for live in self.staff.values():
            if live.presence is Presence.ONLINE:
                online[live.member.store_id] = online.get(live.member.store_id, 0) + 1
        for store_id, count in online.items():
            self.metrics.staff_online.labels(store_id).set(count)

    # Views for the HTTP API -----------------------------------------------------------------
    def staff_view(self) -> list[dict[str, Any]]:
        return [{**staff_public(s.member), "presence": s.presence.value,
                 "load": len(s.conversations)} for s in self.staff.values()]

    def conversation_view(self, conv: Conversation) -> dict[str, Any]:
        return self._summary(self.conversations.get(conv.id, conv))


def staff_public(member: StaffMember) -> dict[str, Any]:
    return {"id": member.id, "name": member.name, "store": member.store_id,
            "skills": sorted(member.skills), "languages": sorted(member.languages),
            "max_conversations": member.max_conversations,
            "channels": sorted(c.value for c in member.channels)}


def message_public(m: ChatMessage) -> dict[str, Any]:
    return {"conversation_id": m.conversation_id, "seq": m.seq, "from": m.sender_role.value,
            "sender_id": m.sender_id, "kind": m.kind.value, "text": m.text, "card": m.card,
            "at": m.at, "client_id": m.client_id}


def async_public(a: AsyncMessage) -> dict[str, Any]:
    return {"id": a.id, "conversation_id": a.conversation_id, "store": a.store_id,
            "skill": a.skill, "text": a.text, "contact": a.contact, "created_at": a.created_at,
            "answer": a.answer, "answered_by": a.answered_by, "answered_at": a.answered_at}


__all__ = ["Connection", "RoutingSettings", "Switchboard", "actor_of"]
