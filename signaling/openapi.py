"""The OpenAPI 3.1 document of the HTTP API, served at /api/openapi.json.

Request bodies come from the pydantic models the handlers validate with, so the document
cannot drift from what the server accepts; a test checks every /api route is described.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from .garments_api import GarmentBody
from .http_api import AsyncAnswerBody, OutcomeBody, StaffBody, StoreBody
from .protocol import ErrorCode

_REF = "#/components/schemas/{model}"


def _schema(model: Any) -> dict[str, Any]:
    return model.model_json_schema(ref_template=_REF)


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    names = {400: "Invalid request", 401: "Missing, invalid or expired token",
             403: "Role not allowed", 404: "Not found", 409: "Not valid in this state",
             413: "Body too large", 429: "Rate limited", 503: "Storage unavailable"}
    return {str(s): {"description": names[s],
                     "content": {"application/json": {"schema": {"$ref": _REF.format(
                         model="Error")}}}} for s in statuses}


def _query(name: str, description: str, schema: dict[str, Any] | None = None,
           ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string", "maxLength": 64}}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": schema or {"type": "string", "maxLength": 64}}


_OBJ = {"type": "object"}
_BEARER = [{"bearer": []}]
_FORMAT = _query("format", "json (default) or csv", {"type": "string", "enum": ["json", "csv"]})
_PERIOD = [_query("from", "unix seconds or ISO 8601, inclusive (default: to - 7 days)"),
           _query("to", "unix seconds or ISO 8601, exclusive (default: now)"),
           _FORMAT, _query("ids", "list conversation ids per figure (default true)",
                           {"type": "boolean"})]


def _report_ok() -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": _OBJ},
                                             "text/csv": {"schema": {"type": "string"}}}}


@cache
def build_openapi() -> dict[str, Any]:
    components: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": [c.value for c in ErrorCode]},
                "message": {"type": "string"}, "details": {}}}}},
    }
    bodies = {}
    for model in (OutcomeBody, AsyncAnswerBody, StoreBody, StaffBody, GarmentBody):
        schema = _schema(model)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        bodies[model] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF.format(model=model.__name__)}}}}

    def op(summary: str, roles: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        out = {"summary": summary, "description": f"Allowed: {roles}.", "responses": responses,
               **extra}
        if roles != "anyone":
            out["security"] = _BEARER
        return out

    paths: dict[str, Any] = {
        "/api/shopper-token": {"post": op(
            "Get an anonymous shopper session token (rate-limited per client address)",
            "anyone", {"200": _json({"type": "object", "required": ["token", "shopper_id"],
                                     "properties": {"token": {"type": "string"},
                                                    "shopper_id": {"type": "string"},
                                                    "expires_at": {"type": "number"}}}),
                       **_errors(429)})},
        "/api/availability": {"get": op(
            "Which channels a shop page should offer right now", "anyone",
            {"200": _json({"type": "object", "properties": {
                k: {"type": "boolean"} for k in ("chat", "audio", "video", "message")} | {
                "staff_online": {"type": "integer"}, "free_slots": {"type": "integer"}}}),
             **_errors(400, 404)},
            parameters=[_query("store", "store id; absent: any store"),
                        _query("skill", "wanted skill"),
                        _query("language", "shopper language (ISO 639-1)")])},
        "/api/qualification": {"get": op(
            "Pre-chat qualification questions that pick a skill", "anyone",
            {"200": _json({"type": "object", "properties": {"questions": {
                "type": "array", "items": _OBJ}}})})},
        "/api/conversations": {"get": op(
            "List conversations, newest first (shoppers: their own; staff: those assigned "
            "to them; operators: all)", "shopper, staff, operator",
            {"200": _json({"type": "object", "properties": {"conversations": {
                "type": "array", "items": _OBJ}}}), **_errors(400, 401, 403)},
            parameters=[_query("state", "queued, assigned, accepted, missed or closed"),
                        _query("store", "store id"), _query("staff", "staff id (operators)"),
                        _query("limit", "1-1000", {"type": "integer"}),
                        _query("offset", "rows to skip", {"type": "integer"})])},
        "/api/conversations/{conversation_id}": {"get": op(
            "One conversation with its events, messages, calls, rating, outcome and "
            "asynchronous messages", "its shopper, staff who handled it, operators",
            {"200": _json(_OBJ), **_errors(401, 403, 404)},
            parameters=[_path("conversation_id")])},
        "/api/conversations/{conversation_id}/outcome": {"post": op(
            "Report the business outcome (order placed, value) of a conversation: the "
            "shop's back end, or a staff member who handled it",
            "operator, staff (who handled it)", {"200": _json(_OBJ), **_errors(400, 401, 403, 404)},
            parameters=[_path("conversation_id")], requestBody=bodies[OutcomeBody])},
        "/api/async-messages": {"get": op(
            "Messages shoppers left when nobody was free (staff: their store and skills)",
            "staff, operator", {"200": _json({"type": "object", "properties": {
                "async_messages": {"type": "array", "items": _OBJ}}}),
                **_errors(401, 403)},
            parameters=[_query("answered", "true or false", {"type": "boolean"}),
                        _query("limit", "1-1000", {"type": "integer"})])},
        "/api/async-messages/{message_id}/answer": {"post": op(
            "Answer a message left by a shopper; they see it when they come back",
            "staff", {"200": _json(_OBJ), **_errors(400, 401, 403, 404)},
            parameters=[_path("message_id", {"type": "integer"})],
            requestBody=bodies[AsyncAnswerBody])},
        "/api/stores": {"get": op("List stores", "operator",
                                  {"200": _json(_OBJ), **_errors(401, 403)})},
        "/api/stores/{store_id}": {"put": op(
            "Create or replace a store", "operator",
            {"200": _json(_OBJ), **_errors(400, 401, 403)}, parameters=[_path("store_id")],
            requestBody=bodies[StoreBody])},
        "/api/staff": {"get": op("List staff with live presence and load", "operator",
                                 {"200": _json(_OBJ), **_errors(401, 403)})},
        "/api/staff/{staff_id}": {"put": op(
            "Create or replace a staff member", "operator",
            {"200": _json(_OBJ), **_errors(400, 401, 403)}, parameters=[_path("staff_id")],
            requestBody=bodies[StaffBody])},
        "/api/garments": {
            "get": op("Virtual try-on garments for the shopper's picker: id, name, SKU, "
                      "category and a PNG thumbnail (data URL); `enabled` says whether "
                      "try-on is on", "shopper, staff, operator",
                      {"200": _json({"type": "object", "properties": {
                          "enabled": {"type": "boolean"},
                          "stores": {"type": "array", "items": {"type": "string"}},
                          "garments": {"type": "array", "items": _OBJ}}}),
                       **_errors(401, 403)}),
            "post": op("Add a garment: sidecar metadata plus `image_base64`, an RGBA PNG "
                       "(bad files: 400 invalid_garment, with the reason)", "operator",
                       {"200": _json(_OBJ), **_errors(400, 401, 403, 409, 413)},
                       requestBody=bodies[GarmentBody])},
        "/api/garments/{garment_id}": {"delete": op(
            "Remove a garment (calls drawing it keep their copy)", "operator",
            {"200": _json(_OBJ), **_errors(401, 403, 404)}, parameters=[_path("garment_id")])},
        "/api/media-sessions": {"get": op(
            "Live media sessions", "operator", {"200": _json(_OBJ), **_errors(401, 403)})},
        "/api/openapi.json": {"get": op("This document", "anyone", {"200": _json(_OBJ)})},
        "/api/reports/kpis": {"get": op(
            "Conversation KPIs for a period (volume, waits, sales, cost, ratings, call quality "
            "joined to conversion); each figure lists the conversations behind it",
            "operator", {"200": _report_ok(), **_errors(400, 401, 403)},
            parameters=[*_PERIOD, _query("store", "store id"),
                        _query("channel", "chat, audio, video (without try-on) or video_tryon",
                               {"type": "string", "enum": ["chat", "audio", "video"]}),
                        _query("skill", "skill")])},
        "/api/reports/staff": {"get": op(
            "Per staff member: online time, conversations, calls, handling time, revenue, "
            "satisfaction, NPS", "operator", {"200": _report_ok(), **_errors(400, 401, 403)},
            parameters=[*_PERIOD, _query("store", "the staff members' store")])},
        "/api/reports/daily": {"get": op(
            "Per calendar day: conversations, misses, orders, conversion, revenue and ratings,"
            " each listing its conversations", "operator",
            {"200": _report_ok(), **_errors(400, 401, 403)},
            parameters=[*_PERIOD, _query("store", "store id"),
                        _query("channel", "chat, audio, video (without try-on) or video_tryon",
                               {"type": "string", "enum": ["chat", "audio", "video"]}),
                        _query("skill", "skill"),
                        _query("tz", "IANA time zone of the days (default UTC)")])},
        "/api/reports/weekly": {"get": op(
            "The weekly report as a file: Markdown, or HTML with inline SVG charts (the same "
            "as `shopcall report --week`)", "operator",
            {"200": {"description": "OK", "content": {
                "text/html": {"schema": {"type": "string"}},
                "text/markdown": {"schema": {"type": "string"}}}},
             **_errors(400, 401, 403)},
            parameters=[_query("week", "ISO week such as 2026-W07 (default: the last complete"
                               " week)", {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"}),
                        _query("store", "store id; absent: every store"),
                        _query("tz", "IANA time zone of the week (default UTC)"),
                        _query("format", "html (default) or md",
                               {"type": "string", "enum": ["html", "md"]})])},
        "/api/reports/staffing": {"get": op(
            "Recommended staff online per hour of next week (Erlang C) and last week's "
            "missed conversations per hour", "operator",
            {"200": _report_ok(), **_errors(400, 401, 403)},
            parameters=[_query("store", "store id; absent: every store"),
                        _query("target_share", "share answered within target_wait_s, 0-1 "
                               "exclusive (default 0.8)", {"type": "number"}),
                        _query("target_wait_s", "0-3600 (default 60)", {"type": "number"}),
                        _query("weeks", "weeks of history, 1-12 (default 4)",
                               {"type": "integer"}),
                        _query("tz", "IANA time zone of the hours (default UTC)"),
                        _FORMAT])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "shopcall HTTP API", "version": "1",
                 "description": "Live conversation traffic uses the WebSocket at /ws "
                                "(docs/protocol.md); this API covers everything else."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())
