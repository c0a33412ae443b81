"""`shopcall report --week`: the file's figures are the operator API's, for the same week.

The database is seeded through the real API (the same four conversations as
test_reports_api.py: c1 and c2 in Lyon with ratings 5/10 and 3/6, orders 899 EUR and none;
c3 missed in Lyon; c4 in Paris with a 50 EUR order). The CLI reads it while the server still
runs (WAL: a read-only reader never blocks it), and every figure it prints is compared with
what /api/reports/* answers for the same ISO week.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from signaling.kpis import Figure, StaffReport, daily_series
from signaling.model import Role
from signaling.sqlite_storage import apply_migrations, load_migrations
from signaling.weekly_report import (
    HEADLINE,
    LABELS,
    WeeklyData,
    format_figure,
    render_html,
    render_markdown,
)

from .harness import ROOT, ServerProcess, http, seeded_server
from .test_reports_api import _seed

pytestmark = pytest.mark.integration


@dataclass
class Seeded:
    server: ServerProcess
    data: dict[str, Any]
    week: str
    start: float
    end: float


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    with seeded_server(tmp_path_factory.mktemp("weekly"), _seed, missed_after_s=0.5,
                       media_backend="none") as (server, data):
        year, week, _ = datetime.fromtimestamp(data["began"], UTC).isocalendar()
        if datetime.fromtimestamp(data["ended"], UTC).isocalendar()[:2] != (year, week):
            pytest.skip("seeded across a week boundary (Sunday midnight UTC)")
        start = datetime.fromisocalendar(year, week, 1).replace(tzinfo=UTC).timestamp()
        yield Seeded(server, data, f"{year}-W{week:02d}", start, start + 7 * 86400)


def shopcall(seeded: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signaling", "report", "--db", str(seeded.server.db),
         "--config", str(seeded.server.config), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60)


async def api(seeded: Seeded, path: str, **params: Any) -> Any:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body = await http("GET", f"{seeded.server.base_url}{path}?{query}",
                              seeded.server.token(Role.OPERATOR, "ops"))
    assert status == 200, body
    return body


def figure(key: str, data: dict[str, Any]) -> Figure:
    """An API figure as the Figure it was made from (its key may carry a currency)."""
    name = key if data["currency"] is None else key[:-len(data["currency"]) - 1]
    return Figure(name, data["value"], data["unit"], tuple(data.get("conversation_ids", ())),
                  data["currency"])


def md_table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after `## heading`, header and rule dropped."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[2:]]


async def test_markdown_report_matches_the_api(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "week.md"
    result = shopcall(seeded, "--week", seeded.week, "--format", "md", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stderr
    text = out.read_text()
    assert text.startswith(f"# Weekly report {seeded.week}, all stores\n")

    kpis = (await api(seeded, "/api/reports/kpis", **{"from": seeded.start,
                                                      "to": seeded.end}))["figures"]
    headline = {row[0]: row[1:] for row in md_table(text, "Headline")}
    # The figures a manager reads first, checked against values worked out by hand.
    assert headline["Conversations"] == ["4", "4"]
    assert headline["Missed"] == ["1", "1"]
    assert headline["Missed share"] == ["25.0%", "1"]
    assert headline["Orders"] == ["2", "2"]
    assert headline["Conversion"] == ["50.0%", "2"]
    assert headline["Revenue (EUR)"] == ["949.00 EUR", "2"]
    assert headline["Satisfaction (1-5)"] == ["4.00", "2"]  # (5 + 3) / 2
    assert headline["NPS"] == ["0", "2"]  # one promoter (10), one detractor (6)
    # And every headline row equals the API's figure for the same week.
    shown = [(k, f) for k, f in kpis.items() if f["name"] in HEADLINE]
    assert len(headline) == len(shown)
    for key, data in shown:
        fig = figure(key, data)
        label = LABELS[fig.name] + (f" ({fig.currency})" if fig.currency else "")
        assert headline[label] == [format_figure(fig), str(data["count"])], key

    quality = {row[0]: row[1] for row in md_table(text, "Call quality")}
    assert quality["Calls measured"] == str(kpis["calls_measured"]["value"]) == "0"
    assert quality["Trouble share"] == "-"  # no media server here: nothing measured

    days = md_table(text, "Day by day")
    assert len(days) == 7 and days[0][0] == datetime.fromtimestamp(
        seeded.start, UTC).date().isoformat()
    daily = (await api(seeded, "/api/reports/daily", **{"from": seeded.start,
                                                        "to": seeded.end}))["days"]
    assert [d[0] for d in days] == [d["date"] for d in daily]
    for row, day in zip(days, daily, strict=True):
        assert row[1] == str(day["figures"]["conversations"]["value"])
        assert row[2] == str(day["figures"]["missed"]["value"])
    assert sum(int(row[1]) for row in days) == 4

    staff_api = (await api(seeded, "/api/reports/staff", **{"from": seeded.start,
                                                            "to": seeded.end}))["staff"]
    staff = {row[0]: row for row in md_table(text, "Staff")}
    assert len(staff) == len(staff_api) == 4
    for member in staff_api:
        row = staff[f"{member['name']} ({member['staff_id']})"]
        f = member["figures"]
        assert row[1] == member["store"]
        assert row[3] == str(f["handled"]["value"])  # columns: online, handled, calls, ...
        assert row[4] == str(f["calls"]["value"])
        assert row[6] == str(f["orders"]["value"])
    assert staff["Alice (alice)"][7] == "899.00 EUR"

    plans = {p["store"]: p for p in (await api(seeded, "/api/reports/staffing"))["stores"]}
    for store in ("lyon", "paris"):
        grid = md_table(text, f"Staffing plan for next week: {store}")
        assert [row[0] for row in grid] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        want = [["-" if v is None else str(v) for v in day]
                for day in plans[store]["recommended_staff"]]
        assert [row[1:] for row in grid] == want


async def test_html_report_for_one_store(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "week.html"
    result = shopcall(seeded, "--week", seeded.week, "--store", "lyon", "--format", "html",
                      "--out", str(out))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html
    # Nothing to fetch: no link, no image, no address but the SVG namespace.
    bare = html.replace("xmlns='http://www.w3.org/2000/svg'", "")
    assert not re.search(r"https?://|src=|href=|@import", bare)
    # Charts are inline SVG: four daily charts (one revenue chart for EUR) and two heat maps.
    assert html.count("<svg") == 6
    assert len(re.findall(r"<rect class='cell'", html)) == 2 * 168
    kpis = (await api(seeded, "/api/reports/kpis", store="lyon",
                      **{"from": seeded.start, "to": seeded.end}))["figures"]
    tiles = dict(re.findall(r"data-figure='([^']+)'><div class='k'>[^<]*</div>"
                            r"<div class='v'>([^<]*)</div>", html))
    assert tiles["conversations"] == "3" == str(kpis["conversations"]["value"])
    assert tiles["missed_share"] == f"{kpis['missed_share']['value'] * 100:.1f}%"
    assert tiles["revenue_EUR"] == "899.00 EUR"
    assert "Staffing plan for next week: lyon" in html
    assert "Staffing plan for next week: paris" not in html

    # Same bytes over HTTP, for an operator (generated_at aside).
    status, over_http = await http(
        "GET", f"{seeded.server.base_url}/api/reports/weekly?week={seeded.week}&store=lyon",
        seeded.server.token(Role.OPERATOR, "ops"))
    assert status == 200
    strip = re.compile(r"Generated at [^<]*")
    assert strip.sub("", over_http) == strip.sub("", html)


def test_bad_arguments_fail_clearly(seeded: Seeded, tmp_path: Path) -> None:
    result = shopcall(seeded, "--week", "2026-W60")
    assert result.returncode == 2 and "2026 has no ISO week 60" in result.stderr
    result = shopcall(seeded, "--week", "next")
    assert result.returncode == 2 and "--week" in result.stderr
    result = shopcall(seeded, "--store", "atlantis")
    assert result.returncode == 2 and "unknown store 'atlantis'" in result.stderr
    assert "lyon" in result.stderr
    result = shopcall(seeded, "--tz", "Mars/Olympus")
    assert result.returncode == 2 and "time zone" in result.stderr
    result = shopcall(seeded, "--format", "pdf")
    assert result.returncode == 2
    missing = subprocess.run(
        [sys.executable, "-m", "signaling", "report", "--db", str(tmp_path / "none.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no database at" in missing.stderr
    # Without --week: the last complete week, printed to standard output.
    result = shopcall(seeded)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Weekly report ")
    assert f"# Weekly report {seeded.week}," not in result.stdout


def test_a_database_at_the_previous_schema_reports_without_quality(tmp_path: Path) -> None:
    """Reports open the database read-only, so they cannot migrate it: a database written by
    the previous version (no call_quality table yet) must still report, measuring nothing."""
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        apply_migrations(conn, load_migrations()[:1])
    finally:
        conn.close()
    result = subprocess.run(
        [sys.executable, "-m", "signaling", "report", "--db", str(db), "--week", "2026-W01"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| Calls measured | 0 | 0 |" in result.stdout


def test_html_escapes_what_operators_typed() -> None:
    """Staff and store names come from operators: the report file must not run them."""
    name = "<img src=x onerror=alert(1)>"
    start = datetime(2026, 1, 5, tzinfo=UTC).timestamp()
    data = WeeklyData(
        week="2026-W02", store="lyon", tz="UTC", start=start, end=start + 7 * 86400,
        generated_at=start, kpis=(Figure("conversations", 0, "count"),),
        days=tuple(daily_series([], start=start, end=start + 7 * 86400, tz=UTC)),
        staff=(StaffReport("s1", name, "lyon", (Figure("handled", 0, "count"),)),),
        plans=())
    html = render_html(data)
    assert name not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<svg" in html  # the daily charts, even for an empty week
    markdown = render_markdown(data)
    # Markdown viewers pass raw HTML through: entities show the name without running it.
    assert name not in markdown and "| &lt;img src=x onerror=alert(1)&gt; (s1) | lyon |" in markdown
