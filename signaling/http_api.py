"""The HTTP API: what is not live (tokens, availability, records, outcomes, administration).

Every endpoint states the roles it admits through `principal(request, ...)`; refusals are
401 (no or bad token) or 403 (wrong role) with a JSON error body, never data. Errors share
the WebSocket error codes so clients handle both the same way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any, ClassVar, Self, TypeVar

from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from .auth import Principal, TokenError, bearer_token, new_shopper_id
from .client_address import client_address
from .keys import (
    ISSUER,
    MEDIA,
    METRICS,
    SETTINGS,
    SHOPPER_TOKEN_LIMITER,
    STORAGE,
    SWITCHBOARD,
    TRUSTED_PROXIES,
    TURN_CHECK,
)
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
from .params import (
    ID_PATTERN,
    ID_TEXT,
    Choice,
    Flag,
    Integer,
    Path,
    Query,
    Text,
    read_all,
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
        if hdrs.ALLOW in exc.headers:  # a 405 names the methods the resource has (RFC 9110)
            resp.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
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
    return parse_body(await request.read(), model)


def parse_body(raw: bytes, model: type[M]) -> M:
    """JSON text to a validated model: 400 invalid_json or invalid_message naming the fields."""
    try:
        data = json.loads(raw or b"null")
        _refuse_lone_surrogates(data)
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


def _refuse_lone_surrogates(data: Any) -> None:
    """`"\\ud800"` is a string json.loads accepts but no UTF-8 (SQLite, a log line) can hold:
    refused here as the invalid text it is (RFC 8259 section 8.2) rather than failing later
    with a 500. Iterative, so it never recurses deeper than json.loads did."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# Request bodies (also published in the OpenAPI document) -----------------------------------
def _integral(value: Any) -> Any:
    """JSON has one number type, and JSON Schema counts 2.0 as the integer 2: take it as 2.
    Anything else goes to strict validation, which refuses bools and strings."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict: pydantic's lax mode would take `false` as 0, `1` as true and "12" as 12, none of
# which the published schema (type integer, number, boolean) admits. Bounds go inside the
# Annotated (nesting it in another would publish them as raw "gt"/"le", not JSON Schema).
JsonNumber = Annotated[float, Strict()]
JsonBool = Annotated[bool, Strict()]
Kbps = Annotated[int, Strict(), Field(gt=0, le=100_000_000), BeforeValidator(_integral)]
MaxConversations = Annotated[int, Strict(), Field(ge=1, le=20), BeforeValidator(_integral)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutcomeBody(_Body):
    order_placed: JsonBool
    # Bounded so sums and averages over many conversations stay finite in the reports.
    order_value: JsonNumber | None = Field(default=None, ge=0, le=1e12)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")

    # The rules `check_consistency` enforces, in the document's words (JSON Schema).
    model_config = ConfigDict(json_schema_extra={"allOf": [
        {"if": {"required": ["order_placed", "order_value"],
                "properties": {"order_placed": {"const": True},
                               "order_value": {"type": "number"}}},
         "then": {"required": ["currency"], "properties": {"currency": {"type": "string"}}}},
        {"if": {"required": ["order_placed"], "properties": {"order_placed": {"const": False}}},
         "then": {"properties": {"order_value": {"anyOf": [{"type": "null"}, {"const": 0}]}}}},
    ]})

    @model_validator(mode="after")
    def check_consistency(self) -> Self:
        if self.order_placed and self.order_value is not None and self.currency is None:
            raise ValueError("currency: needed with order_value")
        if not self.order_placed and self.order_value:
            raise ValueError("order_value: only with an order placed")
        return self


class AsyncAnswerBody(_Body):
    answer: str = Field(min_length=1, max_length=4000)


class StoreBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    overflow: JsonBool = True
    # At most 100 Gbit/s: beyond any shop's link, and far inside SQLite's 64-bit integers
    # (an unbounded one reached the database and failed there with a 500).
    uplink_kbps: Kbps | None = None
    downlink_kbps: Kbps | None = None
    staff_cost_per_hour: JsonNumber | None = Field(default=None, ge=0, le=1e6)


class StaffBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    store: str = Field(min_length=1, max_length=64, description="an existing store's id")
    # As long as what a shopper's query can name (`skill`, `language` parameters).
    skills: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default=[], max_length=100)
    languages: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        default=[], max_length=100)
    max_conversations: MaxConversations = 2
    channels: list[Channel] = list(Channel)


# Parameters (also published in the OpenAPI document) ----------------------------------------
class Params:
    """Each endpoint's query and path parameters, read by its handler, listed by openapi.py."""

    availability: ClassVar = (
        Query("store", Text(64), "store id; absent: any store (an unknown one: 404)"),
        Query("skill", Text(64), "wanted skill"),
        Query("language", Text(16), "shopper language (ISO 639-1)"))
    conversations: ClassVar = (
        Query("state", Choice(tuple(s.value for s in ConversationState)), "conversation state"),
        Query("store", Text(64), "store id"),
        Query("staff", Text(64), "staff id (operators; others only see their own)"),
        Query("limit", Integer(1, 1000), "rows to return (default 100)", 100),
        Query("offset", Integer(0, 10**9), "rows to skip (default 0)", 0))
    async_messages: ClassVar = (
        Query("answered", Flag(), "true: answered only; false: unanswered only; absent: all"),
        Query("limit", Integer(1, 1000), "rows to return (default 100)", 100))
    conversation_id: ClassVar = Path("conversation_id", Text(64, ID_PATTERN), "conversation")
    message_id: ClassVar = Path("message_id", Integer(1, 2**63 - 1), "asynchronous message")
    store_id: ClassVar = Path("store_id", Text(64, ID_PATTERN, ID_TEXT), "store",
                              ErrorCode.INVALID_MESSAGE)
    staff_id: ClassVar = Path("staff_id", Text(64, ID_PATTERN, ID_TEXT), "staff member",
                              ErrorCode.INVALID_MESSAGE)


# Public ----------------------------------------------------------------------------------
@routes.post("/api/shopper-token")
async def shopper_token(request: web.Request) -> web.Response:
    limiter = request.app[SHOPPER_TOKEN_LIMITER]
    if not limiter.allow(client_address(request, request.app[TRUSTED_PROXIES]),
                         time.monotonic()):
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
    q = read_all(request, Params.availability)
    store = q["store"]
    if store is not None and store not in switchboard.stores:
        raise ProtocolError(ErrorCode.NOT_FOUND, f"unknown store {store!r}")
    ctx = ConversationContext(store_id=store, skill=q["skill"], language=q["language"])
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
    cid = Params.conversation_id.read(request)
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
    q = read_all(request, Params.conversations)
    filters: dict[str, Any] = {
        "store_id": q["store"], "limit": q["limit"], "offset": q["offset"],
        "states": None if q["state"] is None else [ConversationState(q["state"])]}
    if who.role is Role.SHOPPER:
        filters["shopper_id"] = who.subject
    elif who.role is Role.STAFF:
        filters["staff_id"] = who.subject
    else:
        filters["staff_id"] = q["staff"]
    await request.app[SWITCHBOARD].flush()
    convs = await request.app[STORAGE].list_conversations(**filters)
    view = request.app[SWITCHBOARD].conversation_view
    return web.json_response({"conversations": [view(c) for c in convs]})


@routes.post("/api/conversations/{conversation_id}/outcome")
async def report_outcome(request: web.Request) -> web.Response:
    """Whether the conversation led to an order: from the shop's back end (operator token),
    or from a staff member who handled it, when the shop has no back-end feed."""
    who = principal(request, Role.OPERATOR, Role.STAFF)
    cid = Params.conversation_id.read(request)
    body = await body_of(request, OutcomeBody)
    storage = request.app[STORAGE]
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
    now = time.time()
    outcome = Outcome(cid, body.order_placed, body.order_value, body.currency, actor, now)
    await storage.set_outcome(outcome, [ConversationEvent(
        cid, EventKind.OUTCOME, now, actor, body.model_dump())])
    return web.json_response({"conversation_id": cid, **body.model_dump(), "at": now})


# Asynchronous messages -------------------------------------------------------------------
@routes.get("/api/async-messages")
async def list_async(request: web.Request) -> web.Response:
    who = principal(request, Role.STAFF, Role.OPERATOR)
    q = read_all(request, Params.async_messages)
    answered, limit = q["answered"], q["limit"]
    storage = request.app[STORAGE]
    await request.app[SWITCHBOARD].flush()
    if who.role is Role.STAFF:
        live = request.app[SWITCHBOARD].staff.get(who.subject)
        if live is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "unknown staff member")
        # Filter before limiting, or other stores' messages would crowd out this one's.
        everything = await storage.list_async_messages(answered=answered, limit=1_000_000)
        messages = [m for m in everything
                    if live.member.may_answer(m.store_id, m.skill)][:limit]
    else:
        messages = await storage.list_async_messages(answered=answered, limit=limit)
    return web.json_response({"async_messages": [async_public(m) for m in messages]})


@routes.post("/api/async-messages/{message_id}/answer")
async def answer_async(request: web.Request) -> web.Response:
    who = principal(request, Role.STAFF)
    message_id = Params.message_id.read(request)
    body = await body_of(request, AsyncAnswerBody)
    switchboard = request.app[SWITCHBOARD]
    existing = await request.app[STORAGE].get_async_message(message_id)
    live = switchboard.staff.get(who.subject)
    if existing is None or live is None or not live.member.may_answer(existing.store_id,
                                                                      existing.skill):
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
    store_id = Params.store_id.read(request)
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
    staff_id = Params.staff_id.read(request)
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
    checker = request.app[TURN_CHECK]
    return web.json_response({"media_sessions": request.app[MEDIA].describe(),
                              "turn": checker.describe() if checker is not None else []})


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


def store_public(s: Store) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "overflow": s.overflow, "uplink_kbps": s.uplink_kbps,
            "downlink_kbps": s.downlink_kbps, "staff_cost_per_hour": s.staff_cost_per_hour}


def event_public(e: ConversationEvent) -> dict[str, Any]:
    return {"kind": e.kind.value, "at": e.at, "actor": e.actor, "data": e.data}


__all__ = ["healthz", "json_errors", "metrics", "readyz", "routes"]
