"""The weekly report as a file (Markdown, or HTML with inline SVG charts): data in, text out.

A shop manager reads it offline, forwards it, prints it, so it is one self-contained file:
no script, no stylesheet link, no image to fetch. The numbers are the same Figure objects
the operator API returns (reporting.py gathers them), formatted here and nowhere else, so the
file and the API can never disagree. Each figure says how many conversations it rests on;
the ids are in the API and the CSV export (a printed list of ids helps nobody).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dt_time
from html import escape

from .kpis import DEFINITIONS, QUALITY_FIGURES, Day, Figure, StaffReport, StorePlan
from .svg_charts import PALETTE, Series, bar_chart, heat_map

__all__ = ["LABELS", "WEEKDAY_SHORT", "WeeklyData", "format_figure", "parse_week",
           "previous_week", "render", "render_html", "render_markdown", "week_bounds",
           "week_name"]

WEEKDAY_SHORT = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")

LABELS: dict[str, str] = {
    "conversations": "Conversations", "missed": "Missed", "missed_share": "Missed share",
    "async_left": "Messages left", "async_answered": "Messages answered",
    "first_response_p50_s": "First response (median)",
    "first_response_p90_s": "First response (p90)",
    "queue_wait_p50_s": "Queue wait (median)", "queue_wait_p90_s": "Queue wait (p90)",
    "conversation_duration_p50_s": "Conversation length (median)",
    "conversation_duration_p90_s": "Conversation length (p90)",
    "conversation_duration_mean_s": "Conversation length (mean)",
    "calls": "Calls", "call_duration_p50_s": "Call length (median)",
    "call_duration_p90_s": "Call length (p90)", "call_duration_mean_s": "Call length (mean)",
    "orders": "Orders", "conversion_rate": "Conversion",
    "revenue": "Revenue", "average_order_value": "Average order value",
    "revenue_per_conversation": "Revenue per conversation",
    "staffed_hours": "Staffed hours", "staff_cost": "Staff cost",
    "cost_per_conversation": "Cost per conversation", "ratings": "Ratings",
    "satisfaction_avg": "Satisfaction (1-5)", "satisfaction_top2_share": "Satisfied (4-5)",
    "nps": "NPS", "time_online_s": "Online", "handled": "Handled",
    "average_handling_time_s": "Avg handling time",
    "calls_measured": "Calls measured", "calls_with_freezes": "Calls with freezes",
    "calls_with_fallbacks": "Calls with audio-only fallback",
    "calls_with_high_loss": "Calls with high loss",
    "calls_with_trouble": "Calls with any trouble", "freeze_share": "Freeze share",
    "fallback_share": "Fallback share", "high_loss_share": "High-loss share",
    "trouble_share": "Trouble share", "conversion_with_trouble": "Conversion, calls with trouble",
    "conversion_without_trouble": "Conversion, calls without trouble",
}
HEADLINE = ("conversations", "missed", "missed_share", "orders", "conversion_rate", "revenue",
            "average_order_value", "revenue_per_conversation", "cost_per_conversation",
            "queue_wait_p50_s", "queue_wait_p90_s", "first_response_p50_s",
            "conversation_duration_mean_s", "calls", "call_duration_mean_s", "ratings",
            "satisfaction_avg", "satisfaction_top2_share", "nps", "async_left",
            "async_answered")
CHART_W = 900  # the HTML page's content width, so charts are drawn at their real size
STAFF_COLUMNS = ("time_online_s", "handled", "calls", "average_handling_time_s", "orders",
                 "revenue", "satisfaction_avg", "nps")


# Weeks -----------------------------------------------------------------------------------
def parse_week(text: str) -> tuple[int, int]:
    """'2026-W47' -> (2026, 47); ValueError with a message a user can act on."""
    match = _WEEK.match(text.strip())
    if match is None:
        raise ValueError(f"week must look like 2026-W07, got {text[:20]!r}")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValueError(f"{year} has no ISO week {week}") from None
    return year, week


def week_bounds(year: int, week: int, tz: tzinfo) -> tuple[float, float]:
    """[Monday 00:00, next Monday 00:00) of ISO week `week` in `tz`, as unix seconds."""
    monday = date.fromisocalendar(year, week, 1)
    return (datetime.combine(monday, dt_time(0), tz).timestamp(),
            datetime.combine(monday + timedelta(days=7), dt_time(0), tz).timestamp())


def week_name(ts: float, tz: tzinfo) -> str:
    year, week, _ = datetime.fromtimestamp(ts, tz).isocalendar()
    return f"{year}-W{week:02d}"


def previous_week(now: float, tz: tzinfo) -> tuple[int, int]:
    """The last complete ISO week before `now`: what a Monday-morning report is about."""
    year, week, _ = (datetime.fromtimestamp(now, tz).date() - timedelta(days=7)).isocalendar()
    return year, week


# Formatting ------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        whole = round(seconds)
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{seconds / 3600:.1f} h"


def format_figure(f: Figure) -> str:
    """How a figure reads on the report; '-' when there was nothing to compute it from."""
    v = f.value
    if v is None:
        return "-"
    if f.unit == "count":
        return f"{int(v)}"
    if f.unit == "share":
        return f"{v * 100:.1f}%"
    if f.unit == "seconds":
        return _duration(v)
    if f.unit == "hours":
        return f"{v:.2f} h"
    if f.unit == "money":
        return f"{v:,.2f}" + (f" {f.currency}" if f.currency else "")
    if f.unit == "score":
        whole = round(v)
        return f"+{whole}" if whole > 0 else str(whole)
    return f"{v:.2f}"


@dataclass(frozen=True, slots=True)
class WeeklyData:
    """Everything the report shows, gathered by reporting.weekly_data."""

    week: str  # e.g. "2026-W47"
    store: str | None  # None: every store
    tz: str
    start: float
    end: float
    generated_at: float
    kpis: tuple[Figure, ...]
    days: tuple[Day, ...]
    staff: tuple[StaffReport, ...]
    plans: tuple[StorePlan, ...]  # next week's staffing, per store in scope

    def title(self) -> str:
        scope = f"store {self.store}" if self.store else "all stores"
        return f"Weekly report {self.week}, {scope}"

    def span(self) -> str:
        first = datetime.fromtimestamp(self.start, self.zone()).date()
        last = first + timedelta(days=6)
        return f"{first:%a %d %b} to {last:%a %d %b %Y} ({self.tz})"

    def zone(self) -> tzinfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.tz)


def _figures(figs: Sequence[Figure], names: Sequence[str]) -> list[Figure]:
    """The figures named, in that order; currency variants together (revenue_EUR, _USD)."""
    return [f for name in names for f in figs if f.name == name]


def _label(f: Figure) -> str:
    base = LABELS.get(f.name, f.name)
    return f"{base} ({f.currency})" if f.currency else base


def _per_person(plan: StorePlan) -> str:
    k = round(plan.concurrency, 1)
    return f"{k:g} conversation{'' if k == 1 else 's'} per person at once"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _by_name(figs: Sequence[Figure]) -> dict[str, Figure]:
    return {f.key: f for f in figs}


def _md_cell(text: str) -> str:
    """A table cell: pipes and newlines would break the table, and most Markdown viewers
    pass raw HTML through, so operator-typed names get entities instead of tags."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\n", " "))


def _staff_name(r: StaffReport) -> str:
    return f"{r.name} ({r.staff_id})" if r.name else r.staff_id


def _day_money(day: Day) -> str:
    revenue = [f for f in day.figures if f.name == "revenue"]
    return ", ".join(format_figure(f) for f in revenue) or "-"


# Markdown --------------------------------------------------------------------------------
def render_markdown(data: WeeklyData) -> str:
    lines = [f"# {data.title()}", "", f"{data.span()}. Conversations opened in the week.", ""]
    lines += ["## Headline", "", "| Figure | Value | Conversations |", "| --- | ---: | ---: |"]
    lines += [f"| {_md_cell(_label(f))} | {format_figure(f)} | {len(f.conversation_ids)} |"
              for f in _figures(data.kpis, HEADLINE)]
    lines += ["", "## Day by day", "",
              "| Day | Conversations | Missed | Orders | Conversion | Revenue | Satisfaction |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for day in data.days:
        f = _by_name(day.figures)
        lines.append(f"| {day.date} | {format_figure(f['conversations'])} | "
                     f"{format_figure(f['missed'])} | {format_figure(f['orders'])} | "
                     f"{format_figure(f['conversion_rate'])} | {_md_cell(_day_money(day))} | "
                     f"{format_figure(f['satisfaction_avg'])} |")
    lines += ["", "## Call quality", "", "| Figure | Value | Calls or conversations |",
              "| --- | ---: | ---: |"]
    lines += [f"| {_md_cell(_label(f))} | {format_figure(f)} | {len(f.conversation_ids)} |"
              for f in _figures(data.kpis, QUALITY_FIGURES)]
    lines += ["", "## Staff", ""]
    if data.staff:
        lines += ["| Staff | Store | " + " | ".join(LABELS[c] for c in STAFF_COLUMNS) + " |",
                  "| --- | --- |" + " ---: |" * len(STAFF_COLUMNS)]
        for r in data.staff:
            cells = [", ".join(format_figure(x) for x in r.figures if x.name == c) or "-"
                     for c in STAFF_COLUMNS]
            lines.append(f"| {_md_cell(_staff_name(r))} | {_md_cell(r.store or '-')} | "
                         + " | ".join(_md_cell(c) for c in cells) + " |")
    else:
        lines.append("No staff in scope.")
    for plan in data.plans:
        lines += ["", f"## Staffing plan for next week: {plan.store}", "",
                  f"Recommended staff online per hour ({data.tz}); {plan.arrivals} "
                  f"conversations in the history, mean handling time "
                  f"{_duration(plan.aht_s)}, {_per_person(plan)}.",
                  "", "| Day | " + " | ".join(f"{h:02d}" for h in range(24)) + " |",
                  "| --- |" + " ---: |" * 24]
        for d in range(7):
            hours = plan.hours[d * 24:(d + 1) * 24]
            lines.append(f"| {WEEKDAY_SHORT[d]} | " + " | ".join(
                "-" if h.staff is None else str(h.staff) for h in hours) + " |")
        missed = [(h, len(h.missed_last_week)) for h in plan.hours if h.missed_last_week]
        lines += ["", "Missed in the last week by hour: " + (", ".join(
            f"{WEEKDAY_SHORT[h.weekday]} {h.hour:02d}:00 {n}" for h, n in missed)
            if missed else "none") + "."]
    lines += ["", "## Definitions", ""]
    names = sorted({f.name for f in data.kpis}
                   | {f.name for r in data.staff for f in r.figures})
    lines += [f"- **{LABELS.get(n, n)}**: {DEFINITIONS[n]}" for n in names if n in DEFINITIONS]
    generated = datetime.fromtimestamp(data.generated_at, data.zone())
    lines += ["", f"Generated at {generated:%Y-%m-%d %H:%M} {data.tz} by shopcall.", ""]
    return "\n".join(lines)


# HTML ------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#111827;margin:0;
background:#f9fafb}main{max-width:980px;margin:0 auto;padding:28px 20px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 12px}
.sub{color:#6b7280;margin:0 0 20px}.tiles{display:grid;
grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.tile{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:12px 14px}
.tile .k{color:#6b7280;font-size:12px}.tile .v{font-size:20px;font-weight:650;margin-top:2px;
white-space:nowrap}
.tile .n{color:#9ca3af;font-size:11px}table{border-collapse:collapse;width:100%;
background:#fff;border:1px solid #e5e7eb;border-radius:10px;overflow:hidden;font-size:13px}
th,td{padding:7px 10px;border-bottom:1px solid #f3f4f6;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f4f6;font-weight:600}
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:10px;
margin:12px 0;overflow-x:auto}svg{max-width:100%;height:auto}dl{font-size:13px;color:#374151}
dt{font-weight:600;margin-top:8px}dd{margin:2px 0 0 0}
@media print{body{background:#fff}.chart,.tile,table{break-inside:avoid}}
"""


def _tiles(figs: Sequence[Figure]) -> str:
    out = ["<div class='tiles'>"]
    for f in figs:
        out.append(f"<div class='tile' data-figure='{escape(f.key)}'><div class='k'>"
                   f"{escape(_label(f))}</div><div class='v'>{escape(format_figure(f))}</div>"
                   f"<div class='n'>{_plural(len(f.conversation_ids), 'conversation')}</div></div>")
    out.append("</div>")
    return "".join(out)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _value(day: Day, name: str) -> float | None:
    return next((f.value for f in day.figures if f.name == name and f.currency is None), None)


def _charts(data: WeeklyData) -> list[str]:
    labels = [f"{WEEKDAY_SHORT[datetime.fromisoformat(d.date).weekday()]} {d.date[8:]}"
              for d in data.days]
    charts = [bar_chart(labels, [
        Series("Conversations", [_value(d, "conversations") for d in data.days], PALETTE[0]),
        Series("Missed", [_value(d, "missed") for d in data.days], PALETTE[1])],
        title="Conversations and misses per day", fmt=lambda v: f"{v:g}", width=CHART_W)]
    charts.append(bar_chart(labels, [
        Series("Conversion", [_value(d, "conversion_rate") for d in data.days], PALETTE[2])],
        title="Conversion per day", fmt=lambda v: f"{v * 100:.0f}%", top=1.0,
        width=CHART_W))
    currencies = sorted({f.currency for d in data.days for f in d.figures
                         if f.name == "revenue" and f.currency})
    for i, cur in enumerate(currencies):
        charts.append(bar_chart(labels, [Series(f"Revenue {cur}", [
            next((f.value for f in d.figures if f.name == "revenue" and f.currency == cur), 0.0)
            for d in data.days], PALETTE[(3 + i) % len(PALETTE)])],
            title=f"Revenue per day ({cur})", fmt=lambda v: f"{v:,.0f}", width=CHART_W))
    charts.append(bar_chart(labels, [
        Series("Satisfaction", [_value(d, "satisfaction_avg") for d in data.days],
               PALETTE[5])], title="Average satisfaction per day (1-5)",
        fmt=lambda v: f"{v:.1f}" if v % 1 else f"{v:.0f}", top=5.0, ticks=5, width=CHART_W))
    return charts


def render_html(data: WeeklyData) -> str:
    kpis = data.kpis
    body = [f"<h1>{escape(data.title())}</h1>",
            f"<p class='sub'>{escape(data.span())}. Conversations opened in the week.</p>",
            "<h2>Headline</h2>", _tiles(_figures(kpis, HEADLINE)), "<h2>Trends</h2>"]
    body += [f"<div class='chart'>{svg}</div>" for svg in _charts(data)]
    body += ["<h2>Day by day</h2>", _table(
        ("Day", "Conversations", "Missed", "Orders", "Conversion", "Revenue", "Satisfaction"),
        [(d.date, *(format_figure(_by_name(d.figures)[n]) for n in (
            "conversations", "missed", "orders", "conversion_rate")), _day_money(d),
          format_figure(_by_name(d.figures)["satisfaction_avg"])) for d in data.days])]
    body += ["<h2>Call quality</h2>", _tiles(_figures(kpis, QUALITY_FIGURES))]
    body.append("<h2>Staff</h2>")
    rows = []
    for r in data.staff:
        cells = [", ".join(format_figure(x) for x in r.figures if x.name == c) or "-"
                 for c in STAFF_COLUMNS]
        rows.append((_staff_name(r), r.store or "-", *cells))
    body.append(_table(("Staff", "Store", *(LABELS[c] for c in STAFF_COLUMNS)), rows)
                if rows else "<p>No staff in scope.</p>")
    for plan in data.plans:
        grid = [[None if h.staff is None else float(h.staff)
                 for h in plan.hours[d * 24:(d + 1) * 24]] for d in range(7)]
        missed = [[float(len(h.missed_last_week)) for h in plan.hours[d * 24:(d + 1) * 24]]
                  for d in range(7)]
        body += [f"<h2>Staffing plan for next week: {escape(plan.store)}</h2>",
                 f"<p class='sub'>Recommended staff online per hour ({escape(data.tz)}); "
                 f"{plan.arrivals} conversations in the history, mean handling time "
                 f"{escape(_duration(plan.aht_s))}, {_per_person(plan)}.</p>",
                 "<div class='chart'>" + heat_map(grid, WEEKDAY_SHORT,
                                                  title="Recommended staff by hour",
                                                  fmt=lambda v: f"{v:g}") + "</div>",
                 "<div class='chart'>" + heat_map(missed, WEEKDAY_SHORT,
                                                  title="Missed in the last week by hour",
                                                  fmt=lambda v: f"{v:g}") + "</div>"]
    names = sorted({f.name for f in kpis} | {f.name for r in data.staff for f in r.figures})
    body.append("<h2>Definitions</h2><dl>" + "".join(
        f"<dt>{escape(LABELS.get(n, n))}</dt><dd>{escape(DEFINITIONS[n])}</dd>"
        for n in names if n in DEFINITIONS) + "</dl>")
    generated = datetime.fromtimestamp(data.generated_at, data.zone())
    body.append(f"<p class='sub'>Generated at {generated:%Y-%m-%d %H:%M} "
                f"{escape(data.tz)} by shopcall.</p>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(data.title())}</title><style>{_CSS}</style></head><body><main>"
            + "".join(body) + "</main></body></html>\n")


def render(data: WeeklyData, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(data)
    if fmt == "html":
        return render_html(data)
    raise ValueError(f"format must be md or html, got {fmt!r}")
