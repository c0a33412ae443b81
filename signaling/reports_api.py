"""Operator reports over HTTP: period KPIs, staff performance and next week's staffing plan.

Every handler checks the operator role first, then validates every query parameter (unknown
ones included, so a typo such as `stor=` fails loudly instead of silently reporting on every
store), flushes the switchboard's pending writes (read-your-writes, as the rest of the API)
and hands the work to `reporting.SQLiteReports`. `format=csv` returns the same figures as the
JSON, one row per figure, per staff member or per hour.
"""

from __future__ import annotations

import csv
import io
import re
import time
import zoneinfo
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from .http_api import principal
from .keys import SETTINGS, SWITCHBOARD
from .kpis import (
    CHANNELS,
    DEFINITIONS,
    HIGH_LOSS_FRACTION,
    Day,
    Figure,
    Filters,
    StaffReport,
    StorePlan,
)
from .model import Role
from .params import Choice, Flag, Instant, Integer, Number, Query, Text, TimeZone, Week, read_all
from .protocol import ErrorCode, ProtocolError
from .reporting import SQLiteReports
from .weekly_report import previous_week, render, week_bounds

__all__ = ["routes"]

routes = web.RouteTableDef()

DEFAULT_PERIOD_S = 7 * 86400
MAX_PERIOD_S = 400 * 86400
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
STAFFING_ASSUMPTIONS = (
    "Erlang C (M/M/N): Poisson arrivals, exponential handling times, no abandonment; "
    "shoppers who give up make real waits shorter than modelled, so the plan errs high.",
    "A staff member allowed k conversations at once counts as k servers; k is the mean "
    "max_conversations of the store's staff (1 when it has none).",
    "Arrivals per hour of the week are the mean over the history weeks; handling time is "
    "the hour's mean with 5+ handled conversations, else the store's, else the configured "
    "default_handle_time_s.",
    "Hours of the week are in the `tz` time zone; staff counts assume everyone is online "
    "for the whole hour.",
)


# Query parameters ------------------------------------------------------------------------
# Every report refuses parameters it does not know (and any given twice), so a typo such as
# `stor=` fails loudly instead of silently reporting on every store.
def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, message)


_FROM = Query("from", Instant(), "start, inclusive: unix seconds, or an ISO 8601 date or "
              "date-time in 2000-2099 (no offset: UTC); default `to` - 7 days. Must be "
              f"before `to`, and at most {MAX_PERIOD_S // 86400} days before it")
_TO = Query("to", Instant(), "end, exclusive, in the same forms as `from` (default: now)")
_FORMAT = Query("format", Choice(("json", "csv")), "json (default) or csv", "json")
_IDS = Query("ids", Flag(), "list the conversation ids behind each figure (default true)",
             True)
_CHANNEL = Query("channel", Choice(CHANNELS),
                 "chat, audio, video (without try-on) or video_tryon")
_SKILL = Query("skill", Text(64), "skill")
_KNOWN_STORE = Query("store", Text(64), "an existing store's id (unknown: 400); absent: every "
                     "store")


def _tz_param(what: str) -> Query:
    return Query("tz", TimeZone(), f"IANA time zone of the {what} (default UTC)",
                 zoneinfo.ZoneInfo("UTC"))


class Params:
    """Each report's query parameters, read by its handler, listed by openapi.py."""

    kpis: ClassVar = (_FROM, _TO, _FORMAT, _IDS, Query("store", Text(64), "store id"),
                      _CHANNEL, _SKILL)
    staff: ClassVar = (_FROM, _TO, _FORMAT, _IDS,
                       Query("store", Text(64), "the staff members' store"))
    daily: ClassVar = (*kpis, _tz_param("days"))
    weekly: ClassVar = (
        Query("week", Week(), "ISO week such as 2026-W07, in 2000-2099 (default: the last "
              "complete week)"),
        _KNOWN_STORE, _tz_param("week"),
        Query("format", Choice(("html", "md")), "html (default) or md", "html"))
    staffing: ClassVar = (
        _KNOWN_STORE,
        Query("target_share", Number(0.0, 1.0, lo_open=True, hi_open=True),
              "share answered within target_wait_s, 0-1 exclusive (default 0.8)", 0.8),
        Query("target_wait_s", Number(0.0, 3600.0), "0-3600 (default 60)", 60.0),
        Query("weeks", Integer(1, 12), "weeks of history, 1-12 (default 4)", 4),
        _tz_param("hours"), _FORMAT)


def _period(q: dict[str, Any], now: float) -> tuple[float, float]:
    end = now if q["to"] is None else q["to"]
    start = end - DEFAULT_PERIOD_S if q["from"] is None else q["from"]
    if start >= end:
        raise _bad("from: must be before to")
    if end - start > MAX_PERIOD_S:
        raise _bad(f"from/to: at most {MAX_PERIOD_S // 86400} days apart")
    return start, end


def _known_store(request: web.Request, store: str | None) -> str | None:
    if store is not None and store not in request.app[SWITCHBOARD].stores:
        raise _bad(f"store: unknown store {store!r}")
    return store


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def _reports(request: web.Request) -> SQLiteReports:
    # Pending writes first: a report must include what its caller just saw happen.
    await request.app[SWITCHBOARD].flush()
    return SQLiteReports(request.app[SETTINGS].database.path)


def _csv(rows: list[list[Any]], filename: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _cell(value: Any) -> Any:
    return "" if value is None else value


# Handlers --------------------------------------------------------------------------------
@routes.get("/api/reports/kpis")
async def report_kpis(request: web.Request) -> web.StreamResponse:
    """Figures for conversations opened in [from, to) matching store, channel and skill."""
    principal(request, Role.OPERATOR)
    q = read_all(request, Params.kpis, strict=True)
    now = time.time()
    start, end = _period(q, now)
    filters = Filters(store=q["store"], channel=q["channel"], skill=q["skill"])
    fmt, with_ids = q["format"], q["ids"]
    figures = await (await _reports(request)).kpis(start, end, now, filters)
    if fmt == "csv":
        rows: list[list[Any]] = [["figure", "currency", "unit", "value", "count",
                                  "conversation_ids"]]
        rows += [[f.name, _cell(f.currency), f.unit, _cell(f.value), len(f.conversation_ids),
                  " ".join(f.conversation_ids) if with_ids else ""] for f in figures]
        return _csv(rows, "kpis.csv")
    return web.json_response({
        "period": _period_json(start, end),
        "filters": {"store": filters.store, "channel": filters.channel,
                    "skill": filters.skill},
        "figures": {f.key: f.to_json(with_ids) for f in figures},
        "definitions": {f.name: DEFINITIONS[f.name] for f in figures},
        "thresholds": {"high_loss_fraction": HIGH_LOSS_FRACTION, "freeze_gap_s": 0.5},
    })


def _period_json(start: float, end: float) -> dict[str, Any]:
    return {"from": start, "to": end, "from_iso": _iso(start), "to_iso": _iso(end)}


@routes.get("/api/reports/staff")
async def report_staff(request: web.Request) -> web.StreamResponse:
    """Per staff member: online time, handled conversations, calls, AHT, revenue, ratings."""
    principal(request, Role.OPERATOR)
    q = read_all(request, Params.staff, strict=True)
    now = time.time()
    start, end = _period(q, now)
    store = q["store"]
    fmt, with_ids = q["format"], q["ids"]
    reports = await (await _reports(request)).staff(start, end, now, store)
    if fmt == "csv":
        return _csv(_staff_rows(reports), "staff.csv")
    names = {f.name for r in reports for f in r.figures}
    return web.json_response({
        "period": _period_json(start, end),
        "filters": {"store": store},
        "staff": [{"staff_id": r.staff_id, "name": r.name, "store": r.store,
                   "figures": {f.key: f.to_json(with_ids) for f in r.figures}}
                  for r in reports],
        "definitions": {n: DEFINITIONS[n] for n in sorted(names)},
    })


def _staff_rows(reports: list[StaffReport]) -> list[list[Any]]:
    """One row per staff member; revenue gets one column per currency that appears."""
    keys: list[str] = []
    for r in reports:
        for f in r.figures:
            if f.key not in keys:
                keys.append(f.key)
    rows: list[list[Any]] = [["staff_id", "name", "store", *keys, "handled_conversation_ids"]]
    for r in reports:
        by_key: dict[str, Figure] = {f.key: f for f in r.figures}
        handled = by_key.get("handled")
        rows.append([r.staff_id, _cell(r.name), _cell(r.store),
                     *[_cell(by_key[k].value) if k in by_key else "" for k in keys],
                     " ".join(handled.conversation_ids) if handled else ""])
    return rows


@routes.get("/api/reports/staffing")
async def report_staffing(request: web.Request) -> web.StreamResponse:
    """Staff to have online per hour of next week, per store, plus last week's missed."""
    principal(request, Role.OPERATOR)
    q = read_all(request, Params.staffing, strict=True)
    store = _known_store(request, q["store"])
    target_share, target_wait_s, weeks = q["target_share"], q["target_wait_s"], q["weeks"]
    tz = q["tz"]
    tz_name, fmt = tz.key, q["format"]
    now = time.time()
    plans = await (await _reports(request)).staffing(
        now=now, weeks=weeks, tz=tz, store=store,
        default_aht_s=request.app[SETTINGS].routing.default_handle_time_s,
        target_share=target_share, target_wait_s=target_wait_s)
    if fmt == "csv":
        rows: list[list[Any]] = [["store", "weekday", "hour", "arrivals_per_hour", "aht_s",
                                  "traffic_erlangs", "servers", "recommended_staff",
                                  "expected_service_level", "missed_last_week",
                                  "missed_conversation_ids"]]
        for plan in plans:
            rows += [[plan.store, WEEKDAYS[h.weekday], h.hour, h.arrivals_per_hour, h.aht_s,
                      h.traffic_erlangs, _cell(h.servers), _cell(h.staff),
                      _cell(h.service_level), len(h.missed_last_week),
                      " ".join(h.missed_last_week)] for h in plan.hours]
        return _csv(rows, "staffing.csv")
    return web.json_response({
        "generated_at": now,
        "history": {**_period_json(now - weeks * 7 * 86400, now), "weeks": weeks},
        "last_week": _period_json(now - 7 * 86400, now),
        "tz": tz_name, "target_share": target_share, "target_wait_s": target_wait_s,
        "weekdays": list(WEEKDAYS),
        "assumptions": list(STAFFING_ASSUMPTIONS),
        "stores": [_plan_json(p) for p in plans],
    })


def _grid(plan: StorePlan, attr: str) -> list[list[Any]]:
    """7 rows (Monday first) of 24 hourly values."""
    return [[getattr(h, attr) for h in plan.hours[d * 24:(d + 1) * 24]] for d in range(7)]


def _plan_json(plan: StorePlan) -> dict[str, Any]:
    return {
        "store": plan.store, "concurrency": plan.concurrency, "aht_s": plan.aht_s,
        "aht_samples": plan.aht_samples, "arrivals": plan.arrivals,
        "recommended_staff": _grid(plan, "staff"),
        "servers": _grid(plan, "servers"),
        "arrivals_per_hour": _grid(plan, "arrivals_per_hour"),
        "aht_by_hour_s": _grid(plan, "aht_s"),
        "expected_service_level": _grid(plan, "service_level"),
        "missed_last_week": [[len(h.missed_last_week) for h in plan.hours[d * 24:(d + 1) * 24]]
                             for d in range(7)],
        "missed_last_week_conversations": [
            {"weekday": WEEKDAYS[h.weekday], "hour": h.hour,
             "conversation_ids": list(h.missed_last_week)}
            for h in plan.hours if h.missed_last_week],
    }


@routes.get("/api/reports/daily")
async def report_daily(request: web.Request) -> web.StreamResponse:
    """Per calendar day: conversations, misses, orders, conversion, revenue, ratings."""
    principal(request, Role.OPERATOR)
    q = read_all(request, Params.daily, strict=True)
    now = time.time()
    start, end = _period(q, now)
    filters = Filters(store=q["store"], channel=q["channel"], skill=q["skill"])
    tz = q["tz"]
    tz_name, fmt, with_ids = tz.key, q["format"], q["ids"]
    days = await (await _reports(request)).daily(start, end, filters, tz)
    if fmt == "csv":
        return _csv(_day_rows(days), "daily.csv")
    names = {f.name for d in days for f in d.figures}
    return web.json_response({
        "period": _period_json(start, end), "tz": tz_name,
        "filters": {"store": filters.store, "channel": filters.channel,
                    "skill": filters.skill},
        "days": [{"date": d.date, "from": d.start, "to": d.end,
                  "figures": {f.key: f.to_json(with_ids) for f in d.figures}} for d in days],
        "definitions": {n: DEFINITIONS[n] for n in sorted(names)},
    })


def _day_rows(days: list[Day]) -> list[list[Any]]:
    """One row per day; revenue gets one column per currency that appears."""
    keys: list[str] = []
    for d in days:
        for f in d.figures:
            if f.key not in keys:
                keys.append(f.key)
    rows: list[list[Any]] = [["date", "from", "to", *keys, "conversation_ids"]]
    for d in days:
        by_key = {f.key: f for f in d.figures}
        rows.append([d.date, d.start, d.end,
                     *[_cell(by_key[k].value) if k in by_key else "" for k in keys],
                     " ".join(by_key["conversations"].conversation_ids)])
    return rows


_REPORT_TYPES = {"md": "text/markdown", "html": "text/html"}


@routes.get("/api/reports/weekly")
async def report_weekly(request: web.Request) -> web.StreamResponse:
    """The weekly report file (Markdown, or HTML with inline SVG charts), as the CLI makes it."""
    principal(request, Role.OPERATOR)
    q = read_all(request, Params.weekly, strict=True)
    fmt = q["format"]
    store = _known_store(request, q["store"])
    settings = request.app[SETTINGS]
    tz = q["tz"]
    tz_name = tz.key
    now = time.time()
    year, week = previous_week(now, tz) if q["week"] is None else q["week"]
    start, end = week_bounds(year, week, tz)
    data = await (await _reports(request)).weekly(
        week=f"{year}-W{week:02d}", start=start, end=end, now=now, store=store,
        tz_name=tz_name, tz=tz, default_aht_s=settings.routing.default_handle_time_s)
    suffix = "-" + re.sub(r"[^A-Za-z0-9_-]", "_", store) if store else ""
    name = f"shopcall-{year}-W{week:02d}{suffix}.{fmt}"
    return web.Response(text=render(data, fmt), content_type=_REPORT_TYPES[fmt],
                        charset="utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})
