"""The I/O edge of reporting: read SQLite rows, build kpis.py's records, call the pure code.

Reports read a lot of rows at once, so they do not share the Storage's single reader thread
(which serves the live conversation traffic): each report opens its own read-only connection
in a worker thread. The database is in WAL mode, so those reads never block the writer and see
a consistent snapshot (one read transaction per load).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from .kpis import (
    CallRecord,
    ConversationRecord,
    Day,
    EventRecord,
    Figure,
    Filters,
    PresenceChange,
    QualityRecord,
    StaffInfo,
    StaffReport,
    StorePlan,
    attributed_store,
    conversation_kpis,
    daily_series,
    handling_segments,
    reporting_channel,
    staff_kpis,
    staffing_plan,
)
from .weekly_report import WeeklyData

__all__ = ["PeriodData", "SQLiteReports", "build_records"]

WEEK_S = 7 * 86400
_BUSY_TIMEOUT_MS = 10_000
_EVENT_KINDS = ("accepted", "transferred", "staff_lost", "closed", "missed", "tryon")


@dataclass(frozen=True, slots=True)
class PeriodData:
    """What one report needs, read in one transaction."""

    records: tuple[ConversationRecord, ...]
    staff: tuple[StaffInfo, ...]
    cost_per_hour: dict[str, float | None]
    presence: tuple[PresenceChange, ...]


class SQLiteReports:
    """Read-only reporting queries over the shopcall database at `path`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        # mode=ro: a reporting bug can never write; each load gets a fresh connection, which
        # costs far less than the report itself and needs no lifecycle in the app.
        conn = sqlite3.connect(self._path.resolve().as_uri() + "?mode=ro", uri=True,
                               isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        return conn

    async def load(self, start: float, end: float) -> PeriodData:
        """Conversations opened in [start, end), plus staff, stores and presence up to end."""
        return await asyncio.to_thread(self._load, start, end)

    def _load(self, start: float, end: float) -> PeriodData:
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # one snapshot for every query below
            try:
                return _read_period(conn, start, end)
            finally:
                conn.execute("COMMIT")
        finally:
            conn.close()

    async def stores(self) -> list[str]:
        """Store ids known to the database, for validating a report's scope."""
        def read() -> list[str]:
            conn = self._connect()
            try:
                return [r[0] for r in conn.execute("SELECT id FROM stores ORDER BY id")]
            finally:
                conn.close()
        return await asyncio.to_thread(read)

    # Reports -----------------------------------------------------------------------------
    async def kpis(self, start: float, end: float, now: float, filters: Filters
                   ) -> list[Figure]:
        data = await self.load(start, end)
        return conversation_kpis(data.records, filters, staff=data.staff,
                                 presence=data.presence, cost_per_hour=data.cost_per_hour,
                                 start=start, end=min(end, now))

    async def staff(self, start: float, end: float, now: float, store: str | None
                    ) -> list[StaffReport]:
        data = await self.load(start, end)
        return staff_kpis(data.records, data.staff, data.presence, start=start,
                          end=min(end, now), store=store)

    async def daily(self, start: float, end: float, filters: Filters, tz: tzinfo
                    ) -> list[Day]:
        data = await self.load(start, end)
        return daily_series(data.records, filters, start=start, end=end, tz=tz)

    async def weekly(self, *, week: str, start: float, end: float, now: float,
                     store: str | None, tz_name: str, tz: tzinfo, default_aht_s: float,
                     target_share: float = 0.8, target_wait_s: float = 60.0) -> WeeklyData:
        """The week's figures plus the staffing plan for the week after it.

        The plan's history is the four weeks up to the week's end (or now, for the current
        week), so a report on a past week recommends what that week's data suggested.
        """
        data = await self.load(start, end)
        filters = Filters(store=store)
        figures = conversation_kpis(data.records, filters, staff=data.staff,
                                    presence=data.presence, cost_per_hour=data.cost_per_hour,
                                    start=start, end=min(end, now))
        days = daily_series(data.records, filters, start=start, end=end, tz=tz)
        staff = staff_kpis(data.records, data.staff, data.presence, start=start,
                           end=min(end, now), store=store)
        plans = await self.staffing(now=min(end, now), weeks=4, tz=tz, store=store,
                                    default_aht_s=default_aht_s, target_share=target_share,
                                    target_wait_s=target_wait_s)
        return WeeklyData(week=week, store=store, tz=tz_name, start=start, end=end,
                          generated_at=now, kpis=tuple(figures), days=tuple(days),
                          staff=tuple(staff), plans=tuple(plans))

    async def staffing(self, *, now: float, weeks: int, tz: tzinfo, store: str | None,
                       default_aht_s: float, target_share: float, target_wait_s: float,
                       ) -> list[StorePlan]:
        """One plan per store (or for `store`), from the `weeks` weeks before `now`."""
        start = now - weeks * WEEK_S
        data = await self.load(start, now)
        stores = sorted(data.cost_per_hour) if store is None else [store]
        plans = []
        for s in stores:
            limits = [m.max_conversations for m in data.staff if m.store == s]
            # A store with nobody configured yet: plan one conversation per person, the
            # conservative reading.
            concurrency = sum(limits) / len(limits) if limits else 1.0
            plans.append(staffing_plan(
                data.records, store=s, history_start=start, history_end=now,
                last_week_start=now - WEEK_S, tz=tz, concurrency=concurrency,
                default_aht_s=default_aht_s, target_share=target_share,
                target_wait_s=target_wait_s))
        return plans


def _in_period(sql: str) -> str:
    return sql.replace(
        "{IN}", "conversation_id IN (SELECT id FROM conversations"
                " WHERE opened_at >= :start AND opened_at < :end)")


def _read_period(conn: sqlite3.Connection, start: float, end: float) -> PeriodData:
    p = {"start": start, "end": end}
    conversations = conn.execute(
        "SELECT id, store_id, skill, channel, staff_id, opened_at, closed_at FROM conversations"
        " WHERE opened_at >= :start AND opened_at < :end ORDER BY opened_at, id", p).fetchall()
    events: dict[str, list[EventRecord]] = defaultdict(list)
    kinds = {f"k{i}": k for i, k in enumerate(_EVENT_KINDS)}
    kind_marks = ", ".join(f":{name}" for name in kinds)
    for row in conn.execute(_in_period(
            "SELECT conversation_id, kind, at, actor FROM conversation_events WHERE {IN}"
            f" AND kind IN ({kind_marks}) ORDER BY conversation_id, at, id"), {**p, **kinds}):
        events[row["conversation_id"]].append(EventRecord(row["kind"], row["at"], row["actor"]))
    first_staff_message = {row[0]: row[1] for row in conn.execute(_in_period(
        "SELECT conversation_id, MIN(at) FROM messages WHERE {IN} AND sender_role = 'staff'"
        " GROUP BY conversation_id"), p)}
    quality = _call_quality(conn, p)
    calls: dict[str, list[CallRecord]] = defaultdict(list)
    for row in conn.execute(_in_period(
            "SELECT id, conversation_id, kind, started_at, ended_at FROM calls WHERE {IN}"
            " ORDER BY proposed_at, id"), p):
        calls[row["conversation_id"]].append(CallRecord(
            row["id"], row["kind"], row["started_at"], row["ended_at"],
            quality.get(row["id"])))
    ratings = {row["conversation_id"]: (row["satisfaction"], row["recommendation"])
               for row in conn.execute(_in_period(
                   "SELECT conversation_id, satisfaction, recommendation FROM ratings"
                   " WHERE {IN}"), p)}
    outcomes = {row["conversation_id"]: (bool(row["order_placed"]), row["order_value"],
                                         row["currency"])
                for row in conn.execute(_in_period(
                    "SELECT conversation_id, order_placed, order_value, currency FROM outcomes"
                    " WHERE {IN}"), p)}
    asyncs = {row[0]: (row[1], row[2]) for row in conn.execute(_in_period(
        "SELECT conversation_id, COUNT(*), COUNT(answered_at) FROM async_messages WHERE {IN}"
        " GROUP BY conversation_id"), p)}
    staff = tuple(StaffInfo(r["id"], r["name"], r["store_id"], r["max_conversations"])
                  for r in conn.execute(
                      "SELECT id, name, store_id, max_conversations FROM staff ORDER BY id"))
    cost = {r["id"]: r["staff_cost_per_hour"]
            for r in conn.execute("SELECT id, staff_cost_per_hour FROM stores ORDER BY id")}
    # Each staff member's last change before the period (their state when it began), then
    # every change inside it. SQLite returns the bare columns of the MAX(at) row.
    presence = [PresenceChange(r["staff_id"], r["presence"], r["at"]) for r in conn.execute(
        "SELECT staff_id, presence, MAX(at) AS at FROM presence_log WHERE at < :start"
        " GROUP BY staff_id", p)]
    presence += [PresenceChange(r["staff_id"], r["presence"], r["at"]) for r in conn.execute(
        "SELECT staff_id, presence, at FROM presence_log WHERE at >= :start AND at < :end"
        " ORDER BY at, id", p)]
    records = build_records(conversations, events, first_staff_message, calls, ratings,
                            outcomes, asyncs, {m.id: m.store for m in staff})
    return PeriodData(tuple(records), staff, cost, tuple(presence))


def _call_quality(conn: sqlite3.Connection, p: dict[str, float]) -> dict[str, QualityRecord]:
    """Quality of the period's calls; empty on a database not yet at schema 2 (reports open
    it read-only, so they cannot migrate it, and older data simply has no measurement)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                    " AND name = 'call_quality'").fetchone() is None:
        return {}
    return {row["call_id"]: QualityRecord(row["video_freezes"], row["audio_only_fallbacks"],
                                          row["loss_fraction"])
            for row in conn.execute(
                "SELECT call_id, video_freezes, audio_only_fallbacks, loss_fraction"
                " FROM call_quality WHERE call_id IN (SELECT id FROM calls WHERE "
                + _in_period("{IN}") + ")", p)}


def build_records(conversations: Sequence[Any], events: dict[str, list[EventRecord]],
                  first_staff_message: dict[str, float], calls: dict[str, list[CallRecord]],
                  ratings: dict[str, tuple[int, int]],
                  outcomes: dict[str, tuple[bool, float | None, str | None]],
                  asyncs: dict[str, tuple[int, int]], store_of_staff: dict[str, str | None],
                  ) -> list[ConversationRecord]:
    """Flatten the rows of each conversation into a ConversationRecord (no I/O)."""
    out = []
    for c in conversations:
        cid = c["id"]
        evs = events.get(cid, [])
        segments = handling_segments(evs)
        accepted = [e.at for e in evs if e.kind == "accepted"]
        last_staff = segments[-1].staff_id if segments else None
        conv_calls = tuple(calls.get(cid, ()))
        rating = ratings.get(cid)
        outcome = outcomes.get(cid)
        left, answered = asyncs.get(cid, (0, 0))
        out.append(ConversationRecord(
            id=cid,
            store=attributed_store(c["store_id"], store_of_staff.get(last_staff or "")),
            channel=reporting_channel(c["channel"], conv_calls,
                                      tryon=any(e.kind == "tryon" for e in evs)),
            skill=c["skill"],
            opened_at=c["opened_at"],
            accepted_at=min(accepted) if accepted else None,
            first_staff_message_at=first_staff_message.get(cid),
            closed_at=c["closed_at"],
            staff_id=last_staff,
            missed=any(e.kind == "missed" for e in evs),
            calls=conv_calls,
            segments=segments,
            satisfaction=None if rating is None else rating[0],
            recommendation=None if rating is None else rating[1],
            order_placed=None if outcome is None else outcome[0],
            order_value=None if outcome is None else outcome[1],
            currency=None if outcome is None else outcome[2],
            async_left=left,
            async_answered=answered,
        ))
    return out
