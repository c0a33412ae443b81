"""The OpenAPI 3.1 document of the HTTP API, served at /api/openapi.json.

It is meant to be exact: what it admits, the server accepts, and what it refuses, the server
refuses; every status an operation can answer is listed, and responses are described field by
field. So it is built from what the handlers use rather than written beside them: request
bodies from the pydantic models the handlers validate with, query and path parameters from the
`params` definitions the handlers read them with. tests/test_openapi_conformance.py holds the
server to it with schemathesis; tests/test_metrics_and_openapi.py checks it is valid and that
every /api route is described.

What JSON Schema cannot say is in the descriptions: a store must exist where a report or a
staff member names one (runtime state), `from` must come before `to` (two parameters), and a
garment's image must be a PNG its anchors fit in (file contents).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from . import http_api, reports_api
from .garments_api import GARMENT_ID, GarmentBody
from .http_api import AsyncAnswerBody, OutcomeBody, StaffBody, StoreBody
from .kpis import CHANNELS
from .model import (
    CallKind,
    Channel,
    ConversationState,
    EventKind,
    MessageKind,
    Presence,
    SenderRole,
)
from .params import Path, Query, time_zones
from .protocol import ErrorCode

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _schema(model: Any) -> dict[str, Any]:
    return model.model_json_schema(ref_template=_REF)


# Schema shorthands ---------------------------------------------------------------------------
STR = {"type": "string"}
NUM = {"type": "number"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if set(schema) == {"type"} and isinstance(schema["type"], str):
        return {"type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [getattr(v, "value", v) for v in values]}


def array(items: dict[str, Any], **limits: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **limits}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with exactly these fields (the optional ones only sometimes)."""
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}, "additionalProperties": False}


def mapping(values: dict[str, Any]) -> dict[str, Any]:
    """An object keyed by names the data decides (figure keys, for instance)."""
    return {"type": "object", "additionalProperties": values}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Errors ----------------------------------------------------------------------------------------
_ERRORS = {
    400: "Invalid request: a parameter or the body does not fit this document (invalid_message,"
         " invalid_json)",
    401: "Missing, invalid or expired token (unauthenticated, invalid_token, expired_token)",
    403: "Role not allowed, or a browser request from an origin that is not allowed (forbidden)",
    404: "Not found (not_found)",
    409: "Not valid in this state (invalid_state)",
    413: "Body too large (message_too_large)",
    429: "Rate limited (rate_limited)",
    503: "The change could not be stored (storage_failed)",
}


def _errors(*statuses: int, **notes: str) -> dict[str, Any]:
    """Error responses; notes (`e400="..."`) say what else makes an operation answer one."""
    out = {}
    for status in statuses:
        note = notes.get(f"e{status}")
        out[str(status)] = _json(_ref("Error"), _ERRORS[status] + (f"; {note}" if note else ""))
    return out


def _params(*params: Query | Path) -> list[dict[str, Any]]:
    return [p.openapi() for p in params]


# Response bodies ---------------------------------------------------------------------------------
_STAFF_MEMBER = {"id": STR, "name": STR, "store": STR, "skills": array(STR),
                 "languages": array(STR), "max_conversations": INT,
                 "channels": array(enum(Channel))}


def _responses() -> dict[str, Any]:
    period = obj({"from": NUM, "to": NUM, "from_iso": STR, "to_iso": STR})
    figure = obj({"name": STR, "value": nullable(NUM), "unit": enum(
        ("count", "share", "seconds", "hours", "money", "score", "average")),
        "currency": nullable(STR), "count": INT},
        {"conversation_ids": array(STR)})
    figures = mapping(_ref("Figure"))
    definitions = mapping(STR)
    filters = obj({"store": nullable(STR), "channel": nullable(enum(CHANNELS)),
                   "skill": nullable(STR)})
    grid = {"type": "array", "minItems": 7, "maxItems": 7}  # Monday first, 24 hours each

    def hours(cell: dict[str, Any]) -> dict[str, Any]:
        return {**grid, "items": array(cell, minItems=24, maxItems=24)}

    call = obj({"call_id": STR, "conversation_id": STR, "kind": enum(CallKind),
                "proposed_by": STR, "started_at": nullable(NUM), "ended_at": nullable(NUM)})
    return {
        "Figure": figure,
        "Period": period,
        "Conversation": obj(
            {"conversation_id": STR, "state": enum(ConversationState), "shopper_id": STR,
             "store": nullable(STR), "skill": nullable(STR), "language": nullable(STR),
             "channel": enum(Channel), "page_url": nullable(STR), "sku": nullable(STR),
             "opened_at": NUM, "queued_at": nullable(NUM), "closed_at": nullable(NUM),
             "staff": nullable(obj({"id": STR, "name": STR}))},
            {"position": INT, "estimated_wait_s": nullable(NUM), "call": call}),
        "AsyncMessage": obj(
            {"id": INT, "conversation_id": STR, "store": nullable(STR), "skill": nullable(STR),
             "text": STR, "contact": nullable(STR), "created_at": NUM,
             "answer": nullable(STR), "answered_by": nullable(STR),
             "answered_at": nullable(NUM)}),
        "Store": obj({"id": STR, "name": STR, "overflow": BOOL, "uplink_kbps": nullable(INT),
                      "downlink_kbps": nullable(INT), "staff_cost_per_hour": nullable(NUM)}),
        "StaffMember": obj(_STAFF_MEMBER),
        "Garment": obj({"id": STR, "name": STR, "sku": STR, "category": STR,
                        "thumbnail": nullable({"type": "string",
                                               "pattern": "^data:image/png;base64,"})}),
        "ConversationRecord": obj({
            "conversation": _ref("Conversation"),
            "events": array(obj({"kind": enum(EventKind), "at": NUM, "actor": nullable(STR),
                                 "data": nullable({"type": "object"})})),
            "messages": array(obj({
                "conversation_id": STR, "seq": INT, "from": enum(SenderRole),
                "sender_id": nullable(STR), "kind": enum(MessageKind), "text": nullable(STR),
                "card": nullable({"type": "object"}), "at": NUM,
                "client_id": nullable(STR)})),
            "calls": array(obj({"call_id": STR, "kind": enum(CallKind), "proposed_by": STR,
                                "proposed_at": NUM, "started_at": nullable(NUM),
                                "ended_at": nullable(NUM)})),
            "rating": nullable(obj({"satisfaction": INT, "recommendation": INT,
                                    "comment": nullable(STR), "at": NUM})),
            "outcome": nullable(obj({"order_placed": BOOL, "order_value": nullable(NUM),
                                     "currency": nullable(STR), "at": NUM})),
            "async_messages": array(_ref("AsyncMessage"))}),
        "KpiReport": obj({"period": _ref("Period"), "filters": filters, "figures": figures,
                          "definitions": definitions,
                          "thresholds": obj({"high_loss_fraction": NUM, "freeze_gap_s": NUM})}),
        "StaffReport": obj({
            "period": _ref("Period"), "filters": obj({"store": nullable(STR)}),
            "staff": array(obj({"staff_id": STR, "name": nullable(STR), "store": nullable(STR),
                                "figures": figures})),
            "definitions": definitions}),
        "DailyReport": obj({
            "period": _ref("Period"), "tz": STR, "filters": filters,
            "days": array(obj({"date": {"type": "string", "format": "date"}, "from": NUM,
                               "to": NUM, "figures": figures})),
            "definitions": definitions}),
        "StaffingPlan": obj({
            "generated_at": NUM,
            "history": obj({**period["properties"], "weeks": INT}),
            "last_week": _ref("Period"), "tz": STR, "target_share": NUM, "target_wait_s": NUM,
            "weekdays": array(STR, minItems=7, maxItems=7), "assumptions": array(STR),
            "stores": array(obj({
                "store": STR, "concurrency": NUM, "aht_s": NUM, "aht_samples": INT,
                "arrivals": INT, "recommended_staff": hours(nullable(INT)),
                "servers": hours(nullable(INT)), "arrivals_per_hour": hours(NUM),
                "aht_by_hour_s": hours(NUM), "expected_service_level": hours(nullable(NUM)),
                "missed_last_week": hours(INT),
                "missed_last_week_conversations": array(obj({
                    "weekday": STR, "hour": INT, "conversation_ids": array(STR)}))}))}),
    }


_OPERATION_IDS = {
    ("/api/shopper-token", "post"): "createShopperToken",
    ("/api/availability", "get"): "getAvailability",
    ("/api/qualification", "get"): "getQualification",
    ("/api/conversations", "get"): "listConversations",
    ("/api/conversations/{conversation_id}", "get"): "getConversation",
    ("/api/conversations/{conversation_id}/outcome", "post"): "reportOutcome",
    ("/api/async-messages", "get"): "listAsyncMessages",
    ("/api/async-messages/{message_id}/answer", "post"): "answerAsyncMessage",
    ("/api/stores", "get"): "listStores",
    ("/api/stores/{store_id}", "put"): "putStore",
    ("/api/staff", "get"): "listStaff",
    ("/api/staff/{staff_id}", "put"): "putStaffMember",
    ("/api/garments", "get"): "listGarments",
    ("/api/garments", "post"): "addGarment",
    ("/api/garments/{garment_id}", "delete"): "deleteGarment",
    ("/api/media-sessions", "get"): "listMediaSessions",
    ("/api/openapi.json", "get"): "getOpenApiDocument",
    ("/api/reports/kpis", "get"): "reportKpis",
    ("/api/reports/staff", "get"): "reportStaff",
    ("/api/reports/daily", "get"): "reportDaily",
    ("/api/reports/weekly", "get"): "reportWeekly",
    ("/api/reports/staffing", "get"): "reportStaffing",
}
# Where the ids other operations take come from (clients, and schemathesis's stateful phase).
_CONVERSATION_ID = {"conversation_id": "$response.body#/conversations/0/conversation_id"}
_LINKS = {
    ("/api/conversations", "get"): {"GetConversation": ("getConversation", _CONVERSATION_ID),
                                    "ReportOutcome": ("reportOutcome", _CONVERSATION_ID)},
    ("/api/async-messages", "get"): {"AnswerAsyncMessage": (
        "answerAsyncMessage", {"message_id": "$response.body#/async_messages/0/id"})},
    ("/api/stores", "get"): {"PutStore": (
        "putStore", {"store_id": "$response.body#/stores/0/id"})},
    ("/api/staff", "get"): {"PutStaffMember": (
        "putStaffMember", {"staff_id": "$response.body#/staff/0/id"})},
    ("/api/garments", "get"): {"DeleteGarment": (
        "deleteGarment", {"garment_id": "$response.body#/garments/0/id"})},
    ("/api/garments", "post"): {"DeleteGarment": (
        "deleteGarment", {"garment_id": "$response.body#/garment/id"})},
}


def _report_ok(model: str) -> dict[str, Any]:
    return {"description": "OK", "content": {
        "application/json": {"schema": _ref(model)},
        "text/csv": {"schema": {"type": "string"}}}}


# The document ------------------------------------------------------------------------------------
@cache
def build_openapi() -> dict[str, Any]:
    components: dict[str, Any] = {
        "Error": obj({"error": obj({"code": enum(ErrorCode), "message": STR},
                                   {"details": {}})}),
        "TimeZone": {"type": "string", "enum": list(time_zones()),
                     "description": "an IANA time zone name this server knows"},
        **_responses(),
    }
    bodies = {}
    for model in (OutcomeBody, AsyncAnswerBody, StoreBody, StaffBody, GarmentBody):
        schema = _schema(model)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        bodies[model] = {"required": True, "content": {"application/json": {
            "schema": _ref(model.__name__)}}}
    hp, rp = http_api.Params, reports_api.Params

    def op(summary: str, roles: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        out = {"summary": summary, "description": f"Allowed: {roles}.", "responses": responses,
               **extra}
        if roles != "anyone":
            out["security"] = [{"bearer": []}]
        return out

    def report(summary: str, params: tuple[Query, ...], ok: dict[str, Any]) -> dict[str, Any]:
        return {"get": op(
            summary + ". Unknown query parameters, and any given twice, are refused.",
            "operator", {"200": ok, **_errors(
                400, 401, 403, e400="also `from` not before `to`, or more than "
                f"{reports_api.MAX_PERIOD_S // 86400} days before it; a `store` that does "
                "not exist (staffing and weekly)")},
            parameters=_params(*params))}

    auth = (401, 403)
    paths: dict[str, Any] = {
        "/api/shopper-token": {"post": op(
            "Get an anonymous shopper session token (rate-limited per client address)",
            "anyone", {"200": _json(obj({"token": STR, "shopper_id": STR, "expires_at": NUM})),
                       **_errors(403, 429)})},
        "/api/availability": {"get": op(
            "Which channels a shop page should offer right now", "anyone",
            {"200": _json(obj({"chat": BOOL, "audio": BOOL, "video": BOOL, "message": BOOL,
                               "staff_online": INT, "free_slots": INT})),
             **_errors(400, 403, 404, e404="no store with the `store` given")},
            parameters=_params(*hp.availability))},
        "/api/qualification": {"get": op(
            "Pre-chat qualification questions that pick a skill", "anyone",
            {"200": _json(obj({"questions": array(obj({
                "id": STR, "text": STR,
                "options": array(obj({"id": STR, "label": STR}))}))})),
             **_errors(403)})},
        "/api/conversations": {"get": op(
            "List conversations, newest first (shoppers: their own; staff: those assigned "
            "to them; operators: all)", "shopper, staff, operator",
            {"200": _json(obj({"conversations": array(_ref("Conversation"))})),
             **_errors(400, *auth)},
            parameters=_params(*hp.conversations))},
        "/api/conversations/{conversation_id}": {"get": op(
            "One conversation with its events, messages, calls, rating, outcome and "
            "asynchronous messages", "its shopper, staff who handled it, operators",
            {"200": _json(_ref("ConversationRecord")),
             **_errors(*auth, 404, e404="also to those who may not read it")},
            parameters=_params(hp.conversation_id))},
        "/api/conversations/{conversation_id}/outcome": {"post": op(
            "Report the business outcome (order placed, value) of a conversation: the "
            "shop's back end, or a staff member who handled it",
            "operator, staff (who handled it)",
            {"200": _json(obj({"conversation_id": STR, "order_placed": BOOL,
                               "order_value": nullable(NUM), "currency": nullable(STR),
                               "at": NUM})),
             **_errors(400, *auth, 404, 413, e404="also to staff who did not handle it")},
            parameters=_params(hp.conversation_id), requestBody=bodies[OutcomeBody])},
        "/api/async-messages": {"get": op(
            "Messages shoppers left when nobody was free (staff: their store and skills)",
            "staff, operator",
            {"200": _json(obj({"async_messages": array(_ref("AsyncMessage"))})),
             **_errors(400, *auth, e403="also staff unknown to this server")},
            parameters=_params(*hp.async_messages))},
        "/api/async-messages/{message_id}/answer": {"post": op(
            "Answer a message left by a shopper; they see it when they come back",
            "staff", {"200": _json(obj({"async_message": _ref("AsyncMessage")})),
                      **_errors(400, *auth, 404, 413, 503,
                                e404="also a message for another store or skill")},
            parameters=_params(hp.message_id), requestBody=bodies[AsyncAnswerBody])},
        "/api/stores": {"get": op("List stores", "operator", {
            "200": _json(obj({"stores": array(_ref("Store"))})), **_errors(*auth)})},
        "/api/stores/{store_id}": {"put": op(
            "Create or replace a store", "operator",
            {"200": _json(obj({"store": _ref("Store")})), **_errors(400, *auth, 413)},
            parameters=_params(hp.store_id), requestBody=bodies[StoreBody])},
        "/api/staff": {"get": op("List staff with live presence and load", "operator", {
            "200": _json(obj({"staff": array(obj({
                **_STAFF_MEMBER, "presence": enum(Presence), "load": INT}))})),
            **_errors(*auth)})},
        "/api/staff/{staff_id}": {"put": op(
            "Create or replace a staff member", "operator",
            {"200": _json(obj({"staff": _ref("StaffMember")})),
             **_errors(400, *auth, 413, e400="also a `store` that does not exist")},
            parameters=_params(hp.staff_id), requestBody=bodies[StaffBody])},
        "/api/garments": {
            "get": op("Virtual try-on garments for the shopper's picker: id, name, SKU, "
                      "category and a PNG thumbnail (data URL); `enabled` says whether "
                      "try-on is on", "shopper, staff, operator",
                      {"200": _json(obj({"enabled": BOOL, "stores": array(STR),
                                         "garments": array(_ref("Garment"))})),
                       **_errors(*auth)}),
            "post": op("Add a garment: sidecar metadata plus `image_base64`, an RGBA PNG "
                       "(bad files: 400 invalid_garment, with the reason)", "operator",
                       {"200": _json(obj({"garment": _ref("Garment")})),
                        **_errors(400, *auth, 409, 413,
                                  e400="also an image that is not an RGBA PNG the anchors "
                                  "fit in (invalid_garment)",
                                  e409="a garment with this id exists",
                                  e413="over 12 MiB")},
                       requestBody=bodies[GarmentBody])},
        "/api/garments/{garment_id}": {"delete": op(
            "Remove a garment (calls drawing it keep their copy)", "operator",
            {"200": _json(obj({"garment": obj({"id": STR})})),
             **_errors(*auth, 404, e404="unknown_garment")},
            parameters=_params(GARMENT_ID))},
        "/api/media-sessions": {"get": op(
            "Live media sessions (further fields, and what a participant is, depend on the "
            "media backend: the SFU adds codecs, bitrates, loss, RTT and how each connection "
            "came up or why not), and the server's last check of each TURN URL", "operator",
            {"200": _json(obj({"media_sessions": array({
                "type": "object",
                "required": ["session_id", "conversation_id", "kind", "participants"],
                "properties": {"session_id": STR, "conversation_id": STR,
                               "kind": enum(CallKind), "participants": {"type": "array"}}}),
                "turn": array(obj({"url": STR, "ok": {"type": ["boolean", "null"]},
                                   "error": {"type": ["string", "null"]},
                                   "checked_at": {"type": ["number", "null"]}}))})),
             **_errors(*auth)})},
        "/api/openapi.json": {"get": op("This document", "anyone", {
            "200": _json({"type": "object", "required": ["openapi", "info", "paths"]}),
            **_errors(403)})},
        "/api/reports/kpis": report(
            "Conversation KPIs for a period (volume, waits, sales, cost, ratings, call quality "
            "joined to conversion); each figure lists the conversations behind it",
            rp.kpis, _report_ok("KpiReport")),
        "/api/reports/staff": report(
            "Per staff member: online time, conversations, calls, handling time, revenue, "
            "satisfaction, NPS", rp.staff, _report_ok("StaffReport")),
        "/api/reports/daily": report(
            "Per calendar day: conversations, misses, orders, conversion, revenue and ratings,"
            " each listing its conversations", rp.daily, _report_ok("DailyReport")),
        "/api/reports/weekly": report(
            "The weekly report as a file: Markdown, or HTML with inline SVG charts (the same "
            "as `shopcall report --week`)", rp.weekly,
            {"description": "OK", "content": {"text/html": {"schema": STR},
                                              "text/markdown": {"schema": STR}}}),
        "/api/reports/staffing": report(
            "Recommended staff online per hour of next week (Erlang C) and last week's "
            "missed conversations per hour", rp.staffing, _report_ok("StaffingPlan")),
    }
    for (path, method), operation_id in _OPERATION_IDS.items():
        paths[path][method]["operationId"] = operation_id
    for (path, method), links in _LINKS.items():
        paths[path][method]["responses"]["200"]["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in links.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "shopcall HTTP API", "version": "1",
                 "description": "Live conversation traffic uses the WebSocket at /ws "
                                "(docs/protocol.md); this API covers everything else. A query "
                                "parameter given empty is the same as one left out."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())
