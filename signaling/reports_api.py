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
import math
import re
import time
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

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
from .protocol import ErrorCode, ProtocolError
from .reporting import SQLiteReports
from .weekly_report import parse_week, previous_week, render, week_bounds

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
def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, message)


def _only(request: web.Request, allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise _bad(f"unknown query parameter {unknown[0]!r}; expected one of "
                   f"{', '.join(sorted(allowed))}")
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise _bad(f"{name}: give it once")


def _text(request: web.Request, name: str, max_len: int = 64) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len:
        raise _bad(f"{name}: at most {max_len} characters")
    return value


def parse_instant(name: str, raw: str) -> float:
    """Unix seconds, or ISO 8601 (date alone = 00:00 UTC; no offset = UTC)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise _bad(f"{name}: not unix seconds or an ISO 8601 date/time: {raw[:40]!r}"
                       ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value < 2**33:
        raise _bad(f"{name}: unix seconds out of range")
    return value


def _period(request: web.Request, now: float) -> tuple[float, float]:
    raw_from, raw_to = _text(request, "from", 40), _text(request, "to", 40)
    end = now if raw_to is None else parse_instant("to", raw_to)
    start = end - DEFAULT_PERIOD_S if raw_from is None else parse_instant("from", raw_from)
    if start >= end:
        raise _bad("from: must be before to")
    if end - start > MAX_PERIOD_S:
        raise _bad(f"from/to: at most {MAX_PERIOD_S // 86400} days apart")
    return start, end


def _number(request: web.Request, name: str, default: float, lo: float, hi: float,
            *, lo_open: bool = False, hi_open: bool = False) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(f"{name}: not a number") from None
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if not math.isfinite(value) or below or above:
        raise _bad(f"{name}: between {lo} and {hi}"
                   f"{' (exclusive)' if lo_open or hi_open else ''}")
    return value


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise _bad(f"{name}: true or false")


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "json") or "json"
    if fmt not in ("json", "csv"):
        raise _bad("format: json or csv")
    return fmt


def _channel(request: web.Request) -> str | None:
    channel = _text(request, "channel")
    if channel is not None and channel not in CHANNELS:
        raise _bad(f"channel: one of {', '.join(CHANNELS)}")
    return channel


def _tz(request: web.Request) -> tuple[str, zoneinfo.ZoneInfo]:
    name = _text(request, "tz") or "UTC"
    try:
        return name, zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(f"tz: unknown time zone {name!r} (IANA names such as Europe/Paris)"
                   ) from None


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
_PERIOD_PARAMS = ("from", "to", "format", "ids")


@routes.get("/api/reports/kpis")
async def report_kpis(request: web.Request) -> web.StreamResponse:
    """Figures for conversations opened in [from, to) matching store, channel and skill."""
    principal(request, Role.OPERATOR)
    _only(request, (*_PERIOD_PARAMS, "store", "channel", "skill"))
    now = time.time()
    start, end = _period(request, now)
    filters = Filters(store=_text(request, "store"), channel=_channel(request),
                      skill=_text(request, "skill"))
    fmt, with_ids = _format(request), _flag(request, "ids", True)
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
    _only(request, (*_PERIOD_PARAMS, "store"))
    now = time.time()
    start, end = _period(request, now)
    store = _text(request, "store")
    fmt, with_ids = _format(request), _flag(request, "ids", True)
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
    _only(request, ("store", "target_share", "target_wait_s", "weeks", "tz", "format"))
    store = _text(request, "store")
    switchboard = request.app[SWITCHBOARD]
    if store is not None and store not in switchboard.stores:
        raise _bad(f"store: unknown store {store!r}")
    target_share = _number(request, "target_share", 0.8, 0.0, 1.0, lo_open=True,
                           hi_open=True)
    target_wait_s = _number(request, "target_wait_s", 60.0, 0.0, 3600.0)
    weeks = _number(request, "weeks", 4, 1, 12)
    if weeks != int(weeks):
        raise _bad("weeks: a whole number of weeks")
    tz_name, tz = _tz(request)
    fmt = _format(request)
    now = time.time()
    plans = await (await _reports(request)).staffing(
        now=now, weeks=int(weeks), tz=tz, store=store,
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
        "history": {**_period_json(now - int(weeks) * 7 * 86400, now), "weeks": int(weeks)},
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
    _only(request, (*_PERIOD_PARAMS, "store", "channel", "skill", "tz"))
    now = time.time()
    start, end = _period(request, now)
    filters = Filters(store=_text(request, "store"), channel=_channel(request),
                      skill=_text(request, "skill"))
    tz_name, tz = _tz(request)
    fmt, with_ids = _format(request), _flag(request, "ids", True)
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
    _only(request, ("week", "store", "tz", "format"))
    fmt = request.query.get("format", "html") or "html"
    if fmt not in _REPORT_TYPES:
        raise _bad("format: md or html")
    store = _text(request, "store")
    settings, switchboard = request.app[SETTINGS], request.app[SWITCHBOARD]
    if store is not None and store not in switchboard.stores:
        raise _bad(f"store: unknown store {store!r}")
    tz_name, tz = _tz(request)
    now = time.time()
    raw_week = _text(request, "week", 10)
    try:
        year, week = previous_week(now, tz) if raw_week is None else parse_week(raw_week)
    except ValueError as exc:
        raise _bad(f"week: {exc}") from None
    start, end = week_bounds(year, week, tz)
    data = await (await _reports(request)).weekly(
        week=f"{year}-W{week:02d}", start=start, end=end, now=now, store=store,
        tz_name=tz_name, tz=tz, default_aht_s=settings.routing.default_handle_time_s)
    suffix = "-" + re.sub(r"[^A-Za-z0-9_-]", "_", store) if store else ""
    name = f"shopcall-{year}-W{week:02d}{suffix}.{fmt}"
    return web.Response(text=render(data, fmt), content_type=_REPORT_TYPES[fmt],
                        charset="utf-8",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})
