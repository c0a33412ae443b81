"""The HTTP API: what is not live (tokens, availability, records, outcomes, administration).

Every endpoint states the roles it admits through `principal(request, ...)`; refusals are
401 (no or bad token) or 403 (wrong role) with a JSON error body, never data. Errors share
the WebSocket error codes so clients handle both the same way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .auth import Principal, TokenError, bearer_token, new_shopper_id
from .keys import ISSUER, MEDIA, METRICS, SETTINGS, SHOPPER_TOKEN_LIMITER, STORAGE, SWITCHBOARD
from .model import (
    Channel,
    ConversationContext,
    ConversationEvent,
    ConversationState,
    EventKind,
    Outcome,
    Role,
    StaffMember,
    Store,
)
from .protocol import ErrorCode, ProtocolError
from .switchboard import async_public, message_public, staff_public

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

routes = web.RouteTableDef()

STATUS_OF = {
    ErrorCode.INVALID_JSON: 400, ErrorCode.INVALID_MESSAGE: 400, ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.MESSAGE_TOO_LARGE: 413, ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.RATE_LIMITED: 429, ErrorCode.UNAUTHENTICATED: 401, ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.EXPIRED_TOKEN: 401, ErrorCode.FORBIDDEN: 403, ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_STATE: 409, ErrorCode.MEDIA_UNAVAILABLE: 503,
    ErrorCode.NEGOTIATION_FAILED: 400, ErrorCode.STORAGE_FAILED: 503,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.TRYON_UNAVAILABLE: 409, ErrorCode.UNKNOWN_GARMENT: 404,
    ErrorCode.INVALID_GARMENT: 400,
}


def error_response(code: ErrorCode, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code.value, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return web.json_response(body, status=STATUS_OF[code])


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every failure into the documented JSON error shape."""
    try:
        return await handler(request)
    except ProtocolError as exc:
        return error_response(exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        code = {404: ErrorCode.NOT_FOUND, 413: ErrorCode.MESSAGE_TOO_LARGE,
                405: ErrorCode.INVALID_MESSAGE}.get(exc.status, ErrorCode.INVALID_MESSAGE)
        resp = error_response(code, exc.reason or "error")
        resp.set_status(exc.status)
        return resp
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ErrorCode.INTERNAL_ERROR, "internal error")


def principal(request: web.Request, *roles: Role) -> Principal:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "an Authorization: Bearer token is needed")
    try:
        who = request.app[ISSUER].verify(token)
    except TokenError as exc:
        raise ProtocolError(ErrorCode(exc.code), str(exc)) from None
    if who.role not in roles:
        raise ProtocolError(ErrorCode.FORBIDDEN,
                            f"this endpoint is for {', '.join(r.value for r in roles)}")
    return who


async def body_of(request: web.Request, model: type[M]) -> M:
    try:
        raw = await request.read()
        data = json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc!s:.200}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]) or None, "problem": e["msg"]}
                    for e in exc.errors(include_url=False, include_input=False)]
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5]),
                            problems) from None


def query_str(request: web.Request, name: str, max_len: int = 64) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{name}: at most {max_len} characters")
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{name}: not an integer") from None
    if not lo <= value <= hi:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{name}: between {lo} and {hi}")
    return value


# Request bodies (also published in the OpenAPI document) -----------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutcomeBody(_Body):
    order_placed: bool
    order_value: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class AsyncAnswerBody(_Body):
    answer: str = Field(min_length=1, max_length=4000)


class StoreBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    overflow: bool = True
    uplink_kbps: int | None = Field(default=None, gt=0)
    downlink_kbps: int | None = Field(default=None, gt=0)
    staff_cost_per_hour: float | None = Field(default=None, ge=0)


class StaffBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    store: str = Field(min_length=1, max_length=64)
    skills: list[str] = []
    languages: list[str] = []
    max_conversations: int = Field(default=2, ge=1, le=20)
    channels: list[Channel] = list(Channel)


# Public ----------------------------------------------------------------------------------
@routes.post("/api/shopper-token")
async def shopper_token(request: web.Request) -> web.Response:
    limiter = request.app[SHOPPER_TOKEN_LIMITER]
    if not limiter.allow(request.remote or "?", time.monotonic()):
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many shopper tokens from this address")
    settings = request.app[SETTINGS]
    shopper_id = new_shopper_id()
    ttl = settings.auth.shopper_token_ttl_s
    token = request.app[ISSUER].mint(Role.SHOPPER, shopper_id, ttl)
    return web.json_response({"token": token, "shopper_id": shopper_id,
                              "expires_at": time.time() + ttl})


@routes.get("/api/availability")
async def availability(request: web.Request) -> web.Response:
    switchboard = request.app[SWITCHBOARD]
    store = query_str(request, "store")
    if store is not None and store not in switchboard.stores:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"unknown store {store!r}")
    ctx = ConversationContext(store_id=store, skill=query_str(request, "skill"),
                              language=query_str(request, "language", 16))
    return web.json_response(switchboard.availability(ctx).to_json(),
                             headers={"Cache-Control": "no-store"})


@routes.get("/api/qualification")
async def qualification(request: web.Request) -> web.Response:
    questions = request.app[SWITCHBOARD].questions
    return web.json_response({"questions": questions.to_public() if questions else []})


# Conversations ---------------------------------------------------------------------------
def _may_read(who: Principal, conv_shopper: str, conv_staff: str | None,
              staff_ids_in_events: set[str]) -> bool:
    if who.role is Role.OPERATOR:
        return True
    if who.role is Role.SHOPPER:
        return conv_shopper == who.subject
    return who.subject == conv_staff or who.subject in staff_ids_in_events


@routes.get("/api/conversations/{conversation_id}")
async def get_conversation(request: web.Request) -> web.Response:
    who = principal(request, Role.SHOPPER, Role.STAFF, Role.OPERATOR)
    storage = request.app[STORAGE]
    switchboard = request.app[SWITCHBOARD]
    cid = request.match_info["conversation_id"]
    await switchboard.flush()
    conv = await storage.get_conversation(cid)
    if conv is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no conversation {cid!r}")
    events = await storage.list_events(cid)
    # Staff who took part: accepted it, transferred it on, or answered its message. Being
    # offered it (and declining) is not enough to read what was said afterwards.
    took_part = (EventKind.ACCEPTED, EventKind.TRANSFERRED, EventKind.ASYNC_ANSWERED)
    handled_by = {e.actor.partition(":")[2] for e in events
                  if e.kind in took_part and e.actor and e.actor.startswith("staff:")}
    if not _may_read(who, conv.shopper_id, conv.staff_id, handled_by):
        # Not found rather than forbidden, so conversation ids cannot be probed.
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no conversation {cid!r}")
    rating = await storage.get_rating(cid)
    outcome = await storage.get_outcome(cid)
    return web.json_response({
        "conversation": switchboard.conversation_view(conv),
        "events": [event_public(e) for e in events],
        "messages": [message_public(m) for m in await storage.list_messages(cid)],
        "calls": [{"call_id": c.id, "kind": c.kind.value, "proposed_by": c.proposed_by,
                   "proposed_at": c.proposed_at, "started_at": c.started_at,
                   "ended_at": c.ended_at} for c in await storage.list_calls(cid)],
        "rating": None if rating is None else {
            "satisfaction": rating.satisfaction, "recommendation": rating.recommendation,
            "comment": rating.comment, "at": rating.at},
        "outcome": None if outcome is None else {
            "order_placed": outcome.order_placed, "order_value": outcome.order_value,
            "currency": outcome.currency, "at": outcome.at},
        "async_messages": [async_public(a) for a in
                           await storage.list_async_messages(conversation_id=cid)],
    })


@routes.get("/api/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    who = principal(request, Role.SHOPPER, Role.STAFF, Role.OPERATOR)
    state = query_str(request, "state")
    try:
        states = [ConversationState(state)] if state else None
    except ValueError:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"state: unknown {state!r}") from None
    filters: dict[str, Any] = {"store_id": query_str(request, "store"), "states": states,
                               "limit": query_int(request, "limit", 100, 1, 1000),
                               "offset": query_int(request, "offset", 0, 0, 10**9)}
    if who.role is Role.SHOPPER:
        filters["shopper_id"] = who.subject
    elif who.role is Role.STAFF:
        filters["staff_id"] = who.subject
    else:
        filters["staff_id"] = query_str(request, "staff")
    await request.app[SWITCHBOARD].flush()
    convs = await request.app[STORAGE].list_conversations(**filters)
    view = request.app[SWITCHBOARD].conversation_view
    return web.json_response({"conversations": [view(c) for c in convs]})


@routes.post("/api/conversations/{conversation_id}/outcome")
async def report_outcome(request: web.Request) -> web.Response:
    """Whether the conversation led to an order: from the shop's back end (operator token),
    or from a staff member who handled it, when the shop has no back-end feed."""
    who = principal(request, Role.OPERATOR, Role.STAFF)
    body = await body_of(request, OutcomeBody)
    storage = request.app[STORAGE]
    cid = request.match_info["conversation_id"]
    await request.app[SWITCHBOARD].flush()
    conv = await storage.get_conversation(cid)
    if conv is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no conversation {cid!r}")
    actor = f"{who.role.value}:{who.subject}"
    if who.role is Role.STAFF and conv.staff_id != who.subject and not any(
            e.kind == EventKind.ACCEPTED and e.actor == actor
            for e in await storage.list_events(cid)):
        # Only staff who handled it; to others it does not exist (ids cannot be probed).
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no conversation {cid!r}")
    if body.order_placed and body.order_value is not None and body.currency is None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "currency: needed with order_value")
    if not body.order_placed and body.order_value:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "order_value: only with an order placed")
    now = time.time()
    outcome = Outcome(cid, body.order_placed, body.order_value, body.currency, actor, now)
    await storage.set_outcome(outcome, [ConversationEvent(
        cid, EventKind.OUTCOME, now, actor, body.model_dump())])
    return web.json_response({"conversation_id": cid, **body.model_dump(), "at": now})


# Asynchronous messages -------------------------------------------------------------------
@routes.get("/api/async-messages")
async def list_async(request: web.Request) -> web.Response:
    who = principal(request, Role.STAFF, Role.OPERATOR)
    raw = request.query.get("answered")
    answered = None if raw is None else raw.lower() in ("1", "true", "yes")
    storage = request.app[STORAGE]
    limit = query_int(request, "limit", 100, 1, 1000)
    await request.app[SWITCHBOARD].flush()
    if who.role is Role.STAFF:
        live = request.app[SWITCHBOARD].staff.get(who.subject)
        if live is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "unknown staff member")
        # Filter before limiting, or other stores' messages would crowd out this one's.
        everything = await storage.list_async_messages(answered=answered, limit=1_000_000)
        messages = [m for m in everything
                    if _staff_may_answer(live.member, m.store_id, m.skill)][:limit]
    else:
        messages = await storage.list_async_messages(answered=answered, limit=limit)
    return web.json_response({"async_messages": [async_public(m) for m in messages]})


def _staff_may_answer(member: StaffMember, store_id: str | None, skill: str | None) -> bool:
    """Staff answer messages left for their store (or any store) that match their skills."""
    if store_id is not None and store_id != member.store_id:
        return False
    return skill is None or skill in member.skills


@routes.post("/api/async-messages/{message_id}/answer")
async def answer_async(request: web.Request) -> web.Response:
    who = principal(request, Role.STAFF)
    try:
        message_id = int(request.match_info["message_id"])
    except ValueError:
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such message") from None
    body = await body_of(request, AsyncAnswerBody)
    switchboard = request.app[SWITCHBOARD]
    existing = await request.app[STORAGE].get_async_message(message_id)
    live = switchboard.staff.get(who.subject)
    if existing is None or live is None or not _staff_may_answer(
            live.member, existing.store_id, existing.skill):
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no asynchronous message {message_id}")
    stored = await switchboard.answer_async(who.subject, message_id, body.answer)
    return web.json_response({"async_message": async_public(stored)})


# Administration (operators) --------------------------------------------------------------
@routes.get("/api/stores")
async def list_stores(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    return web.json_response({"stores": [store_public(s) for s in
                                         await request.app[STORAGE].list_stores()]})


@routes.put("/api/stores/{store_id}")
async def put_store(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    store_id = _path_id(request, "store_id")
    body = await body_of(request, StoreBody)
    store = Store(store_id, body.name, body.overflow, body.uplink_kbps, body.downlink_kbps,
                  body.staff_cost_per_hour)
    await request.app[STORAGE].upsert_store(store)
    request.app[SWITCHBOARD].add_store(store)
    return web.json_response({"store": store_public(store)})


@routes.get("/api/staff")
async def list_staff(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    return web.json_response({"staff": request.app[SWITCHBOARD].staff_view()})


@routes.put("/api/staff/{staff_id}")
async def put_staff(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    staff_id = _path_id(request, "staff_id")
    body = await body_of(request, StaffBody)
    switchboard = request.app[SWITCHBOARD]
    if body.store not in switchboard.stores:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"store: unknown store {body.store!r}")
    member = StaffMember(staff_id, body.name, body.store, frozenset(body.skills),
                         frozenset(body.languages), body.max_conversations,
                         frozenset(body.channels))
    await request.app[STORAGE].upsert_staff(member)
    switchboard.add_staff(member)
    return web.json_response({"staff": staff_public(member)})


@routes.get("/api/media-sessions")
async def media_sessions(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    return web.json_response({"media_sessions": request.app[MEDIA].describe()})


# Operations ------------------------------------------------------------------------------
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics (per-store staff online, queue lengths): operators only here; a
    separate listen address ([metrics] host/port) serves them without a token."""
    principal(request, Role.OPERATOR)
    return open_metrics(request)


def open_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[SWITCHBOARD].draining:  # load balancers: send new work elsewhere
        return web.json_response({"status": "draining"}, status=503)
    try:
        await request.app[STORAGE].schema_version()
    except Exception as exc:
        return web.json_response({"status": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response({"status": "ready"})


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= 64 or not value.replace("-", "").replace("_", "").isalnum():
        raise ProtocolError(ErrorCode.INVALID_MESSAGE,
                            f"{name}: 1-64 letters, digits, '-' or '_'")
    return value


def store_public(s: Store) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "overflow": s.overflow, "uplink_kbps": s.uplink_kbps,
            "downlink_kbps": s.downlink_kbps, "staff_cost_per_hour": s.staff_cost_per_hour}


def event_public(e: ConversationEvent) -> dict[str, Any]:
    return {"kind": e.kind.value, "at": e.at, "actor": e.actor, "data": e.data}


__all__ = ["healthz", "json_errors", "metrics", "readyz", "routes"]
