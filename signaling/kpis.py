"""Reporting figures (issue 7), computed by pure functions over plain records.

Nothing here reads a database or a clock: `reporting.py` loads rows and turns them into the
frozen records below, so every definition can be tested with a handful of hand-made records
and explained to a shop manager figure by figure. Every figure carries the ids of the
conversations behind it, so any number on a report can be traced to the conversations that
make it up.

Definitions (also served with each report, see DEFINITIONS):

- A conversation belongs to a period when it was OPENED in it ([from, to), unix seconds).
- Store of a conversation: the store the shopper's page asked for; when it asked for none
  ("any store"), the store of the staff member who handled it last; otherwise none.
- Channel of a conversation: the richest medium it reached, chat < audio < video: the
  channel the shopper opened with, raised to the kind of any call that actually started. A
  chat escalated to video is a video conversation; a video request nobody took stays video.
- Handling segment: a stretch during which one staff member held an accepted conversation,
  from its `accepted` event to the next `transferred`, `staff_lost` or `closed` event.
- Call quality: what the media server measured over each call (mediaserver/call_quality.py).
  A call "had trouble" when it froze at least once, fell back to audio only at least once, or
  lost more than HIGH_LOSS_FRACTION of its video packets (worst stream, either direction).
  Calls without a measurement (no media server, or recorded before it existed) are left out
  of the quality figures rather than counted as fine.
- Days: calendar days in the report's time zone; a conversation belongs to the day it was
  opened on.
- Percentiles use the nearest-rank method: the p-th percentile of N sorted values is the
  value at 1-based rank ceil(p/100 * N). It is always an observed value (no interpolation),
  so it can be traced to one conversation; sample ids are listed in ascending value order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dt_time
from typing import Any

from .erlang import required_servers, service_level, traffic_erlangs

__all__ = [
    "CHANNELS",
    "DEFINITIONS",
    "HIGH_LOSS_FRACTION",
    "QUALITY_FIGURES",
    "CallRecord",
    "ConversationRecord",
    "Day",
    "EventRecord",
    "Figure",
    "Filters",
    "HourPlan",
    "PresenceChange",
    "QualityRecord",
    "Segment",
    "StaffInfo",
    "StaffReport",
    "StorePlan",
    "attributed_store",
    "conversation_kpis",
    "daily_series",
    "handling_segments",
    "hour_of_week",
    "online_intervals",
    "percentile",
    "reporting_channel",
    "staff_kpis",
    "staffing_plan",
]

# In order of richness. "video_tryon": a video call in which the shopper turned virtual
# try-on on at least once; "video" is a video call without it.
CHANNELS = ("chat", "audio", "video", "video_tryon")
_RANK = {c: i for i, c in enumerate(CHANNELS)}
ONLINE = "online"
WEEK_HOURS = 7 * 24
# A call lost "a lot" above this share of its video packets: at 5% a browser's loss-based
# controller is already cutting the bitrate (it holds between 2% and 10%) and retransmissions
# no longer hide every gap, so pictures visibly break up.
HIGH_LOSS_FRACTION = 0.05

DEFINITIONS: dict[str, str] = {
    "conversations": "conversations opened in the period (matching the filters)",
    "missed": "conversations nobody accepted before the missed timeout",
    "missed_share": "missed / conversations",
    "async_left": "asynchronous messages shoppers left on those conversations (ids: their "
                  "conversations)",
    "async_answered": "of those messages, the ones staff have answered (by report time)",
    "first_response_p50_s": "first staff chat message (text or product card) minus opened_at,"
                            " median (nearest rank) over conversations with a staff message",
    "first_response_p90_s": "same, 90th percentile (nearest rank)",
    "queue_wait_p50_s": "first acceptance minus opened_at, median over accepted conversations",
    "queue_wait_p90_s": "same, 90th percentile",
    "conversation_duration_p50_s": "closed_at minus first acceptance, median over accepted "
                                   "and closed conversations",
    "conversation_duration_p90_s": "same, 90th percentile",
    "conversation_duration_mean_s": "same, mean",
    "calls": "calls that started (proposed and accepted) in those conversations",
    "call_duration_p50_s": "ended_at minus started_at, median over ended calls (ids: one per "
                           "call, so a conversation with two calls appears twice)",
    "call_duration_p90_s": "same, 90th percentile",
    "call_duration_mean_s": "same, mean",
    "orders": "conversations with a reported outcome order_placed = true",
    "conversion_rate": "orders / conversations (all of them, missed included)",
    "revenue": "sum of order_value of the orders, per currency",
    "average_order_value": "revenue / orders that reported a value, per currency",
    "revenue_per_conversation": "revenue / conversations, per currency",
    "staffed_hours": "hours the staff of the stores in scope spent with presence 'online' in "
                     "the period (presence_log), counting only stores with a staff cost; "
                     "channel and skill filters do not split it: staff time is shared",
    "staff_cost": "sum over those stores of staff_cost_per_hour x staffed hours",
    "cost_per_conversation": "staff_cost / conversations of those stores in the period "
                             "(ignoring the channel and skill filters, for the same reason)",
    "ratings": "conversations the shopper rated",
    "satisfaction_avg": "mean satisfaction (1-5) over rated conversations",
    "satisfaction_top2_share": "share of ratings with satisfaction 4 or 5",
    "nps": "net promoter score: % of ratings recommending 9-10 minus % recommending 0-6",
    "time_online_s": "seconds with presence 'online' in the period (presence_log)",
    "handled": "conversations opened in the period in which this staff member accepted it",
    "average_handling_time_s": "mean over handled conversations of the time this staff "
                               "member held each (their handling segments), closed ones only",
    "calls_measured": "calls with a media quality measurement (ran through the media server;"
                      " ids: one per call)",
    "calls_with_freezes": "measured calls in which some receiver's video froze (> 0.5 s gap "
                          "while not paused and the publisher was sending)",
    "calls_with_fallbacks": "measured calls in which a receiver was switched to audio only",
    "calls_with_high_loss": f"measured calls that lost more than {HIGH_LOSS_FRACTION:.0%} of "
                            "their video packets (worst stream, either direction)",
    "calls_with_trouble": "measured calls with a freeze, an audio-only fallback or high loss",
    "freeze_share": "calls_with_freezes / calls_measured",
    "fallback_share": "calls_with_fallbacks / calls_measured",
    "high_loss_share": "calls_with_high_loss / calls_measured",
    "trouble_share": "calls_with_trouble / calls_measured",
    "conversion_with_trouble": "orders / conversations that had a measured call with trouble "
                               "(ids: those conversations)",
    "conversion_without_trouble": "orders / conversations whose measured calls all went "
                                  "without trouble (ids: those conversations)",
}
QUALITY_FIGURES = ("calls_measured", "calls_with_freezes", "calls_with_fallbacks",
                   "calls_with_high_loss", "calls_with_trouble", "freeze_share",
                   "fallback_share", "high_loss_share", "trouble_share",
                   "conversion_with_trouble", "conversion_without_trouble")


# Input records ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EventRecord:
    """The part of a conversation event the figures need."""

    kind: str
    at: float
    actor: str | None = None  # "staff:<id>", "shopper:<id>", "system", ...


@dataclass(frozen=True, slots=True)
class Segment:
    """One staff member holding an accepted conversation; end None while it still runs."""

    staff_id: str
    start: float
    end: float | None

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class QualityRecord:
    """The part of a call's media quality measurement the figures need."""

    video_freezes: int = 0
    audio_only_fallbacks: int = 0
    loss_fraction: float | None = None  # None: no video to lose

    @property
    def froze(self) -> bool:
        return self.video_freezes > 0

    @property
    def fell_back(self) -> bool:
        return self.audio_only_fallbacks > 0

    @property
    def high_loss(self) -> bool:
        return self.loss_fraction is not None and self.loss_fraction > HIGH_LOSS_FRACTION

    @property
    def troubled(self) -> bool:
        return self.froze or self.fell_back or self.high_loss


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    kind: str  # "audio" | "video"
    started_at: float | None  # None: proposed, never accepted
    ended_at: float | None
    quality: QualityRecord | None = None  # None: not measured

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """Everything the figures need about one conversation, flattened."""

    id: str
    store: str | None  # see attributed_store
    channel: str  # see reporting_channel
    skill: str | None
    opened_at: float
    accepted_at: float | None = None  # first acceptance
    first_staff_message_at: float | None = None
    closed_at: float | None = None
    staff_id: str | None = None  # last staff member who held it (gets rating and outcome)
    missed: bool = False
    calls: tuple[CallRecord, ...] = ()
    segments: tuple[Segment, ...] = ()
    satisfaction: int | None = None  # 1-5
    recommendation: int | None = None  # 0-10
    order_placed: bool | None = None  # None: no outcome reported
    order_value: float | None = None
    currency: str | None = None
    async_left: int = 0
    async_answered: int = 0


@dataclass(frozen=True, slots=True)
class PresenceChange:
    staff_id: str
    presence: str
    at: float


@dataclass(frozen=True, slots=True)
class StaffInfo:
    id: str
    name: str | None
    store: str | None
    max_conversations: int = 1


@dataclass(frozen=True, slots=True)
class Filters:
    store: str | None = None
    channel: str | None = None
    skill: str | None = None

    def admits(self, r: ConversationRecord, *, store_only: bool = False) -> bool:
        if self.store is not None and r.store != self.store:
            return False
        if store_only:
            return True
        return (self.channel is None or r.channel == self.channel) and (
            self.skill is None or r.skill == self.skill)


# Output ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Figure:
    """One number on a report and the conversations it was computed from."""

    name: str
    value: float | None  # None: nothing to compute it from (no sample, no division)
    unit: str  # count | share | seconds | hours | money | score | average
    conversation_ids: tuple[str, ...] = ()
    currency: str | None = None

    @property
    def key(self) -> str:
        return self.name if self.currency is None else f"{self.name}_{self.currency}"

    def to_json(self, with_ids: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "unit": self.unit,
                               "currency": self.currency, "count": len(self.conversation_ids)}
        if with_ids:
            out["conversation_ids"] = list(self.conversation_ids)
        return out


# Derivations -----------------------------------------------------------------------------
def staff_of(actor: str | None) -> str | None:
    if actor is None or not actor.startswith("staff:"):
        return None
    return actor.partition(":")[2] or None


_SEGMENT_ENDS = frozenset({"transferred", "staff_lost", "closed"})


def handling_segments(events: Iterable[EventRecord]) -> tuple[Segment, ...]:
    """Split a conversation's events into who held it when.

    An `accepted` event by staff X opens X's segment; the next `transferred` (X handed it on),
    `staff_lost` (X went offline or lost their device) or `closed` ends it. Events must be in
    the order they happened.
    """
    out: list[Segment] = []
    holder: tuple[str, float] | None = None
    for e in events:
        if e.kind == "accepted":
            staff = staff_of(e.actor)
            if holder is not None:  # defensive: a second accept without an end in between
                out.append(Segment(holder[0], holder[1], e.at))
            holder = (staff, e.at) if staff is not None else None
        elif e.kind in _SEGMENT_ENDS and holder is not None:
            out.append(Segment(holder[0], holder[1], e.at))
            holder = None
    if holder is not None:
        out.append(Segment(holder[0], holder[1], None))
    return tuple(out)


def reporting_channel(opened_channel: str, calls: Iterable[CallRecord], *,
                      tryon: bool = False) -> str:
    """The richest of the opening channel and the kinds of calls that started; a video
    conversation in which try-on was used counts as "video_tryon"."""
    best = opened_channel if opened_channel in _RANK else "chat"
    for c in calls:
        if c.started_at is not None and c.kind in _RANK and _RANK[c.kind] > _RANK[best]:
            best = c.kind
    return "video_tryon" if tryon and best == "video" else best


def attributed_store(requested: str | None, last_handler_store: str | None) -> str | None:
    """The store asked for, else the store of whoever handled it last."""
    return requested if requested is not None else last_handler_store


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: sorted value at 1-based rank ceil(p/100 * N); None if empty."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def online_intervals(changes: Iterable[PresenceChange], start: float, end: float,
                     ) -> dict[str, list[tuple[float, float]]]:
    """Per staff member, the [a, b) stretches with presence 'online', clipped to [start, end).

    A change's presence lasts until that staff member's next change. Pass the last change
    before `start` too, so someone online since before the period counts from `start`. An
    'online' with no later change lasts until `end` (the caller passes min(to, now)). A server
    that crashed never logged its staff going offline, so their time runs on until their next
    recorded change: a known overcount, documented rather than guessed away.
    """
    by_staff: dict[str, list[PresenceChange]] = defaultdict(list)
    for c in changes:
        by_staff[c.staff_id].append(c)
    out: dict[str, list[tuple[float, float]]] = {}
    for staff_id, rows in by_staff.items():
        rows.sort(key=lambda c: c.at)
        spans: list[tuple[float, float]] = []
        for i, c in enumerate(rows):
            if c.presence != ONLINE:
                continue
            until = rows[i + 1].at if i + 1 < len(rows) else end
            a, b = max(c.at, start), min(until, end)
            if b > a:
                spans.append((a, b))
        out[staff_id] = spans
    return out


def _online_seconds(changes: Iterable[PresenceChange], start: float, end: float,
                    ) -> dict[str, float]:
    return {s: sum(b - a for a, b in spans)
            for s, spans in online_intervals(changes, start, end).items()}


def _ids(records: Iterable[ConversationRecord]) -> tuple[str, ...]:
    return tuple(sorted(r.id for r in records))


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _sample_figures(name: str, sample: list[tuple[float, str]],
                    with_mean: bool = False) -> list[Figure]:
    """p50/p90 (and mean) of (value, conversation id) pairs; ids in ascending value order."""
    sample = sorted(sample)
    values = [v for v, _ in sample]
    ids = tuple(cid for _, cid in sample)
    out = [Figure(f"{name}_p50_s", percentile(values, 50), "seconds", ids),
           Figure(f"{name}_p90_s", percentile(values, 90), "seconds", ids)]
    if with_mean:
        out.append(Figure(f"{name}_mean_s", sum(values) / len(values) if values else None,
                          "seconds", ids))
    return out


def _rating_figures(rated: list[ConversationRecord]) -> list[Figure]:
    ids = _ids(rated)
    sats = [r.satisfaction for r in rated if r.satisfaction is not None]
    recs = [r.recommendation for r in rated if r.recommendation is not None]
    promoters = sum(1 for x in recs if x >= 9)
    detractors = sum(1 for x in recs if x <= 6)
    nps = None if not recs else 100.0 * (promoters - detractors) / len(recs)
    return [
        Figure("ratings", len(rated), "count", ids),
        Figure("satisfaction_avg", _ratio(sum(sats), len(sats)), "average", ids),
        Figure("satisfaction_top2_share", _ratio(sum(1 for s in sats if s >= 4), len(sats)),
               "share", ids),
        Figure("nps", nps, "score", ids),
    ]


def _money_figures(orders: list[ConversationRecord], conversations: int) -> list[Figure]:
    """Revenue figures per currency: adding euros to dollars would be meaningless."""
    by_currency: dict[str, list[ConversationRecord]] = defaultdict(list)
    for r in orders:
        if r.order_value is not None:
            by_currency[r.currency or "XXX"].append(r)
    out: list[Figure] = []
    for currency in sorted(by_currency):
        rows = by_currency[currency]
        revenue = sum(r.order_value or 0.0 for r in rows)
        ids = _ids(rows)
        out += [Figure("revenue", revenue, "money", ids, currency),
                Figure("average_order_value", revenue / len(rows), "money", ids, currency),
                Figure("revenue_per_conversation", _ratio(revenue, conversations), "money",
                       ids, currency)]
    return out


# Conversation KPIs -----------------------------------------------------------------------
def conversation_kpis(records: Iterable[ConversationRecord], filters: Filters = Filters(), *,
                      staff: Iterable[StaffInfo] = (),
                      presence: Iterable[PresenceChange] = (),
                      cost_per_hour: Mapping[str, float | None] | None = None,
                      start: float = 0.0, end: float = 0.0) -> list[Figure]:
    """All the period figures of issue 7 for the records that pass `filters`.

    `records` are the conversations opened in [start, end); `end` for presence should already
    be clipped to "now". Cost needs the store's staff (their presence) and its cost per hour.
    """
    every = list(records)
    rows = [r for r in every if filters.admits(r)]
    n = len(rows)
    missed = [r for r in rows if r.missed]
    left = [r for r in rows if r.async_left]
    answered = [r for r in rows if r.async_answered]
    out = [
        Figure("conversations", n, "count", _ids(rows)),
        Figure("missed", len(missed), "count", _ids(missed)),
        Figure("missed_share", _ratio(len(missed), n), "share", _ids(missed)),
        Figure("async_left", sum(r.async_left for r in left), "count", _ids(left)),
        Figure("async_answered", sum(r.async_answered for r in answered), "count",
               _ids(answered)),
    ]
    out += _sample_figures("first_response", [
        (r.first_staff_message_at - r.opened_at, r.id) for r in rows
        if r.first_staff_message_at is not None])
    out += _sample_figures("queue_wait", [
        (r.accepted_at - r.opened_at, r.id) for r in rows if r.accepted_at is not None])
    out += _sample_figures("conversation_duration", [
        (r.closed_at - r.accepted_at, r.id) for r in rows
        if r.accepted_at is not None and r.closed_at is not None], with_mean=True)
    started = [(c, r.id) for r in rows for c in r.calls if c.started_at is not None]
    out.append(Figure("calls", len(started), "count", tuple(sorted(cid for _, cid in started))))
    out += _sample_figures("call_duration", [
        (c.duration_s, cid) for c, cid in started if c.duration_s is not None], with_mean=True)
    orders = [r for r in rows if r.order_placed]
    out += [Figure("orders", len(orders), "count", _ids(orders)),
            Figure("conversion_rate", _ratio(len(orders), n), "share", _ids(orders))]
    out += _money_figures(orders, n)
    out += _cost_figures(every, filters, staff, presence, cost_per_hour or {}, start, end)
    out += _rating_figures([r for r in rows if r.satisfaction is not None])
    out += quality_figures(rows)
    return out


def quality_figures(rows: Sequence[ConversationRecord]) -> list[Figure]:
    """Call quality joined to results: trouble shares over measured calls, and conversion
    of conversations whose calls had trouble against those whose calls went well.

    Call-level figures list one conversation id per call (like call durations). Conversion
    compares conversations, since an order belongs to the conversation, not to one call.
    """
    measured = [(c.quality, r.id) for r in rows for c in r.calls if c.quality is not None]
    n = len(measured)
    out = [Figure("calls_measured", n, "count", tuple(sorted(cid for _, cid in measured)))]
    tests: tuple[tuple[str, str, Callable[[QualityRecord], bool]], ...] = (
        ("calls_with_freezes", "freeze_share", lambda q: q.froze),
        ("calls_with_fallbacks", "fallback_share", lambda q: q.fell_back),
        ("calls_with_high_loss", "high_loss_share", lambda q: q.high_loss),
        ("calls_with_trouble", "trouble_share", lambda q: q.troubled))
    for name, share, test in tests:
        ids = tuple(sorted(cid for q, cid in measured if test(q)))
        out += [Figure(name, len(ids), "count", ids),
                Figure(share, _ratio(len(ids), n), "share", ids)]
    with_trouble, without = [], []
    for r in rows:
        qualities = [c.quality for c in r.calls if c.quality is not None]
        if qualities:
            (with_trouble if any(q.troubled for q in qualities) else without).append(r)
    for name, group in (("conversion_with_trouble", with_trouble),
                        ("conversion_without_trouble", without)):
        orders = sum(1 for r in group if r.order_placed)
        out.append(Figure(name, _ratio(orders, len(group)), "share", _ids(group)))
    return out


# Daily series ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Day:
    date: str  # YYYY-MM-DD in the report's time zone
    start: float
    end: float
    figures: tuple[Figure, ...]


def _local_midnight(day: date, tz: tzinfo) -> float:
    return datetime.combine(day, dt_time(0), tz).timestamp()


def daily_series(records: Iterable[ConversationRecord], filters: Filters = Filters(), *,
                 start: float, end: float, tz: tzinfo) -> list[Day]:
    """Per calendar day (in `tz`) touching [start, end): the figures a trend chart needs.

    Days are clipped to [start, end), so the first and last may be partial; each carries its
    own bounds. A day with no conversation still appears (a chart must show the zero).
    """
    if end <= start:
        return []
    rows = [r for r in records if filters.admits(r) and start <= r.opened_at < end]
    first = datetime.fromtimestamp(start, tz).date()
    last = datetime.fromtimestamp(end - 1e-6, tz).date()
    by_day: dict[date, list[ConversationRecord]] = defaultdict(list)
    for r in rows:
        by_day[datetime.fromtimestamp(r.opened_at, tz).date()].append(r)
    out: list[Day] = []
    day = first
    while day <= last:
        nxt = day + timedelta(days=1)
        todays = by_day.get(day, [])
        n = len(todays)
        missed = [r for r in todays if r.missed]
        orders = [r for r in todays if r.order_placed]
        figures = [Figure("conversations", n, "count", _ids(todays)),
                   Figure("missed", len(missed), "count", _ids(missed)),
                   Figure("orders", len(orders), "count", _ids(orders)),
                   Figure("conversion_rate", _ratio(len(orders), n), "share", _ids(orders)),
                   *[f for f in _money_figures(orders, n) if f.name == "revenue"],
                   *_rating_figures([r for r in todays if r.satisfaction is not None])]
        out.append(Day(day.isoformat(), max(start, _local_midnight(day, tz)),
                       min(end, _local_midnight(nxt, tz)), tuple(figures)))
        day = nxt
    return out


def _cost_figures(every: list[ConversationRecord], filters: Filters,
                  staff: Iterable[StaffInfo], presence: Iterable[PresenceChange],
                  cost_per_hour: Mapping[str, float | None], start: float, end: float,
                  ) -> list[Figure]:
    """Staff cost per conversation over the stores in scope that have a configured cost.

    Staffed hours are 'online' time: the time a store paid someone to be reachable by remote
    shoppers. Time 'busy in store' is paid too but serves walk-in customers, so it is not
    charged to remote conversations. Stores without staff_cost_per_hour are left out of both
    the cost and the conversation count, rather than counted as free.
    """
    costed = {s for s, c in cost_per_hour.items() if c is not None}
    if filters.store is not None:
        costed &= {filters.store}
    seconds = _online_seconds(presence, start, end)
    hours = 0.0
    cost = 0.0
    for member in staff:
        if member.store in costed:
            h = seconds.get(member.id, 0.0) / 3600.0
            hours += h
            cost += h * float(cost_per_hour[member.store] or 0.0)
    scope = [r for r in every if r.store in costed and filters.admits(r, store_only=True)]
    ids = _ids(scope)
    if not costed:
        return [Figure("staffed_hours", None, "hours"), Figure("staff_cost", None, "money"),
                Figure("cost_per_conversation", None, "money")]
    return [Figure("staffed_hours", hours, "hours"), Figure("staff_cost", cost, "money"),
            Figure("cost_per_conversation", _ratio(cost, len(scope)), "money", ids)]


# Staff performance -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StaffReport:
    staff_id: str
    name: str | None
    store: str | None
    figures: tuple[Figure, ...]


def staff_kpis(records: Iterable[ConversationRecord], staff: Iterable[StaffInfo],
               presence: Iterable[PresenceChange], *, start: float, end: float,
               store: str | None = None) -> list[StaffReport]:
    """Per staff member of `store` (all stores when None), their figures for the period.

    Handling is credited to everyone who held the conversation (each for their own segments);
    the outcome and the rating go to whoever held it last, the person the shopper left with.
    Calls count for the staff member holding the conversation when the call started.
    """
    rows = list(records)
    members = {m.id: m for m in staff}
    for r in rows:  # staff who handled conversations but were since removed still count
        for s in r.segments:
            members.setdefault(s.staff_id, StaffInfo(s.staff_id, None, None))
    seconds = _online_seconds(presence, start, end)
    out: list[StaffReport] = []
    for member in sorted(members.values(), key=lambda m: m.id):
        if store is not None and member.store != store:
            continue
        handled: list[ConversationRecord] = []
        held: list[tuple[float, str]] = []
        calls: list[str] = []
        for r in rows:
            mine = [s for s in r.segments if s.staff_id == member.id]
            if not mine:
                continue
            handled.append(r)
            if all(s.end is not None for s in mine):
                held.append((sum(s.duration_s or 0.0 for s in mine), r.id))
            for c in r.calls:
                if c.started_at is not None and any(
                        s.start <= c.started_at and (s.end is None or c.started_at <= s.end)
                        for s in mine):
                    calls.append(r.id)
        last = [r for r in rows if r.staff_id == member.id]
        orders = [r for r in last if r.order_placed]
        held.sort()
        figures = [
            Figure("time_online_s", seconds.get(member.id, 0.0), "seconds"),
            Figure("handled", len(handled), "count", _ids(handled)),
            Figure("calls", len(calls), "count", tuple(sorted(calls))),
            Figure("average_handling_time_s",
                   _ratio(sum(v for v, _ in held), len(held)), "seconds",
                   tuple(cid for _, cid in held)),
            Figure("orders", len(orders), "count", _ids(orders)),
            *[f for f in _money_figures(orders, len(last)) if f.name == "revenue"],
            *_rating_figures([r for r in last if r.satisfaction is not None]),
        ]
        out.append(StaffReport(member.id, member.name, member.store, tuple(figures)))
    return out


# Staffing plan ---------------------------------------------------------------------------
def hour_of_week(ts: float, tz: tzinfo) -> int:
    """0 = Monday 00:00-00:59 in `tz`, 167 = Sunday 23:00-23:59."""
    local = datetime.fromtimestamp(ts, tz)
    return local.weekday() * 24 + local.hour


@dataclass(frozen=True, slots=True)
class HourPlan:
    weekday: int  # 0 = Monday
    hour: int
    arrivals_per_hour: float  # mean over the history weeks
    aht_s: float
    traffic_erlangs: float
    servers: int | None  # conversation slots needed; None: unreachable
    staff: int | None  # people online: ceil(servers / concurrency)
    service_level: float | None  # expected with `servers`
    missed_last_week: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StorePlan:
    store: str
    concurrency: float  # conversations one staff member holds at once (servers per person)
    aht_s: float  # the store's mean over the history
    aht_samples: int
    arrivals: int  # conversations in the history window
    hours: tuple[HourPlan, ...]  # 168, Monday 00:00 first


MIN_AHT_SAMPLES = 5  # fewer handled conversations in an hour slot: use the store's mean


def staffing_plan(records: Iterable[ConversationRecord], *, store: str,
                  history_start: float, history_end: float, last_week_start: float,
                  tz: tzinfo, concurrency: float, default_aht_s: float,
                  target_share: float, target_wait_s: float) -> StorePlan:
    """Staff to have online in each hour of next week, from the history's hours of the week.

    - Arrivals per hour-of-week: conversations of `store` opened in that hour (in `tz`) over
      [history_start, history_end), divided by the number of weeks that window spans. Missed
      conversations are demand too and count.
    - AHT: per conversation, the total of its closed handling segments (every staff member who
      held it); per hour-of-week slot the mean when it has MIN_AHT_SAMPLES or more, else the
      store's mean over the history, else `default_aht_s`.
    - Servers: Erlang C's fewest N with service level >= target_share within target_wait_s.
    - Concurrency: a staff member allowed k conversations at once is modelled as k servers,
      each with the measured AHT (which already reflects any slowdown from multitasking, since
      it was measured while they multitasked); staff = ceil(N / k), k = `concurrency`.
    - Missed last week: missed conversations of `store` opened in [last_week_start,
      history_end), by the hour of the week they were opened in.
    """
    if concurrency <= 0:
        raise ValueError("concurrency must be > 0")
    weeks = (history_end - history_start) / (7 * 86400)
    if weeks <= 0:
        raise ValueError("the history window is empty")
    arrivals = [0] * WEEK_HOURS
    handled: list[list[float]] = [[] for _ in range(WEEK_HOURS)]
    missed: list[list[str]] = [[] for _ in range(WEEK_HOURS)]
    total = 0
    for r in records:
        if r.store != store or not history_start <= r.opened_at < history_end:
            continue
        slot = hour_of_week(r.opened_at, tz)
        arrivals[slot] += 1
        total += 1
        if r.segments and all(s.end is not None for s in r.segments):
            handled[slot].append(sum(s.duration_s or 0.0 for s in r.segments))
        if r.missed and r.opened_at >= last_week_start:
            missed[slot].append(r.id)
    everything = [v for slot in handled for v in slot]
    store_aht = sum(everything) / len(everything) if everything else default_aht_s
    store_aht = store_aht if store_aht > 0 else default_aht_s
    hours: list[HourPlan] = []
    for slot in range(WEEK_HOURS):
        samples = handled[slot]
        aht = sum(samples) / len(samples) if len(samples) >= MIN_AHT_SAMPLES else store_aht
        aht = aht if aht > 0 else store_aht
        rate = arrivals[slot] / weeks
        a = traffic_erlangs(rate, aht)
        servers = required_servers(rate, aht, target_share, target_wait_s)
        hours.append(HourPlan(
            weekday=slot // 24, hour=slot % 24, arrivals_per_hour=rate, aht_s=aht,
            traffic_erlangs=a, servers=servers,
            staff=None if servers is None else math.ceil(servers / concurrency - 1e-9),
            service_level=None if servers is None else (
                1.0 if servers == 0 else service_level(a, servers, aht, target_wait_s)),
            missed_last_week=tuple(sorted(missed[slot]))))
    return StorePlan(store=store, concurrency=concurrency, aht_s=store_aht,
                     aht_samples=len(everything), arrivals=total, hours=tuple(hours))

