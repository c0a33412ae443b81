"""The report endpoints against a real server seeded through its real API.

One module-scoped server (no media backend, conversations missed after 0.5 s) is seeded once:

  c1 lyon chat, guitars: alice accepts, both chat, the shopper escalates to video (alice
     accepts, the shopper hangs up), alice closes; rated 5/10; order 899 EUR.
  c2 lyon audio, guitars: offered to alice, who declines; dave accepts, proposes an audio
     call the shopper accepts, dave hangs up, the shopper closes; no staff chat message;
     rated 3/6; outcome "no order".
  c3 lyon video, pianos: bob is offline, so it is missed; the shopper leaves a message and
     bob answers it.
  c4 paris chat, guitars: carol accepts, answers, closes; order 50 EUR; not rated.

Lyon costs 36 per staff hour (set through PUT /api/stores/lyon), Paris has no cost.

Expected values are computed here from the timestamps the server recorded, read back with
GET /api/conversations/{id}, never from the test's sleeps. Presence changes carry no
timestamp over the API, so online time is checked against the presence_log the server wrote
(read-only), and bounded by the test's own clock as a sanity check.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.erlang import required_servers
from signaling.model import Role

from .harness import ServerProcess, WsClient, http, seeded_server

pytestmark = pytest.mark.integration

REPORTS = ("/api/reports/kpis", "/api/reports/staff", "/api/reports/staffing",
           "/api/reports/daily", "/api/reports/weekly")


@dataclass
class World:
    server: ServerProcess
    began: float  # test clock before the first action
    ended: float  # test clock after everyone went offline
    cids: dict[str, str]
    records: dict[str, dict[str, Any]]  # GET /api/conversations/{id}, after seeding

    @property
    def base(self) -> str:
        return self.server.base_url

    @property
    def ops(self) -> str:
        return self.server.token(Role.OPERATOR, "reporter")


async def _staff(server: ServerProcess, staff_id: str) -> WsClient:
    client = await WsClient.connect(server.ws_url, server.token(Role.STAFF, staff_id))
    client.keep_alive()
    await client.ok("presence.set", status="online")
    return client


async def _shopper(server: ServerProcess) -> WsClient:
    status, body = await http("POST", server.base_url + "/api/shopper-token")
    assert status == 200, body
    return await WsClient.connect(server.ws_url, body["token"])


async def _seed(server: ServerProcess) -> dict[str, Any]:
    began = time.time()
    ops = server.token(Role.OPERATOR, "seeder")
    status, _ = await http("PUT", server.base_url + "/api/stores/lyon", ops,
                           {"name": "Harmonie Lyon", "staff_cost_per_hour": 36.0})
    assert status == 200
    clients: list[WsClient] = []
    try:
        alice = await _staff(server, "alice")
        s1, s2, s3, s4 = [await _shopper(server) for _ in range(4)]
        clients += [alice, s1, s2, s3, s4]

        c1 = (await s1.ok("conversation.open", store="lyon", skill="guitars", language="en")
              )["conversation"]["conversation_id"]
        await alice.expect("conversation.offered", conversation__conversation_id=c1)
        await alice.ok("conversation.accept", conversation_id=c1)
        await s1.ok("chat.send", conversation_id=c1, text="Is it solid top?")
        await alice.ok("chat.send", conversation_id=c1, text="Yes, solid spruce.")
        await alice.ok("chat.send", conversation_id=c1, text="Want to see it?")
        call = (await s1.ok("call.propose", conversation_id=c1, kind="video"))["call"]
        await alice.expect("call.proposed")
        await alice.ok("call.accept", call_id=call["call_id"])
        await s1.ok("call.end", call_id=call["call_id"])
        await alice.ok("conversation.close", conversation_id=c1)
        await s1.expect("feedback.requested", conversation_id=c1)
        await s1.ok("feedback.submit", conversation_id=c1, satisfaction=5, recommendation=10)

        # Dave comes online after alice finished c1, so alice has idled longest: c2 goes to
        # her first; she declines and it goes to dave.
        dave = await _staff(server, "dave")
        clients.append(dave)
        c2 = (await s2.ok("conversation.open", store="lyon", skill="guitars", language="en",
                          channel="audio"))["conversation"]["conversation_id"]
        await alice.expect("conversation.offered", conversation__conversation_id=c2)
        await alice.ok("conversation.decline", conversation_id=c2, reason="busy")
        await dave.expect("conversation.offered", conversation__conversation_id=c2)
        await dave.ok("conversation.accept", conversation_id=c2)
        call = (await dave.ok("call.propose", conversation_id=c2, kind="audio"))["call"]
        await s2.expect("call.proposed")
        await s2.ok("call.accept", call_id=call["call_id"])
        await dave.ok("call.end", call_id=call["call_id"])
        await s2.ok("conversation.close", conversation_id=c2)
        await s2.ok("feedback.submit", conversation_id=c2, satisfaction=3, recommendation=6)

        c3 = (await s3.ok("conversation.open", store="lyon", skill="pianos", channel="video")
              )["conversation"]["conversation_id"]
        await s3.expect("conversation.missed", conversation_id=c3, timeout=10)
        left = await s3.ok("async.leave", conversation_id=c3, text="Any upright pianos?",
                           contact="s3@example.com")
        status, _ = await http(
            "POST", f"{server.base_url}/api/async-messages/{left['async_message']['id']}/answer",
            server.token(Role.STAFF, "bob"), {"answer": "Yes, three."})
        assert status == 200

        carol = await _staff(server, "carol")
        clients.append(carol)
        c4 = (await s4.ok("conversation.open", store="paris", skill="guitars", language="en")
              )["conversation"]["conversation_id"]
        await carol.expect("conversation.offered", conversation__conversation_id=c4)
        await carol.ok("conversation.accept", conversation_id=c4)
        await carol.ok("chat.send", conversation_id=c4, text="Bonjour!")
        await carol.ok("conversation.close", conversation_id=c4)

        for cid, outcome in ((c1, {"order_placed": True, "order_value": 899.0,
                                   "currency": "EUR"}),
                             (c2, {"order_placed": False}),
                             (c4, {"order_placed": True, "order_value": 50.0,
                                   "currency": "EUR"})):
            status, body = await http(
                "POST", f"{server.base_url}/api/conversations/{cid}/outcome", ops, outcome)
            assert status == 200, body
        for staff in (alice, dave, carol):
            await staff.ok("presence.set", status="offline")
        ended = time.time()
        cids = {"c1": c1, "c2": c2, "c3": c3, "c4": c4}
        records = {}
        for name, cid in cids.items():
            status, records[name] = await http(
                "GET", f"{server.base_url}/api/conversations/{cid}", ops)
            assert status == 200
    finally:
        for client in clients:
            await client.close()
    return {"began": began, "ended": ended, "cids": cids, "records": records}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    with seeded_server(tmp_path_factory.mktemp("reports"), _seed, missed_after_s=0.5,
                       media_backend="none") as (server, data):
        yield World(server=server, **data)


# Helpers ---------------------------------------------------------------------------------
def at(record: dict[str, Any], kind: str, nth: int = 0) -> float:
    return [e["at"] for e in record["events"] if e["kind"] == kind][nth]


def first_staff_message(record: dict[str, Any]) -> float | None:
    staff = [m["at"] for m in record["messages"] if m["from"] == "staff"]
    return min(staff) if staff else None


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def online_seconds(world: World, staff_id: str) -> float:
    """Online time from the log the server wrote (the API does not expose it)."""
    conn = sqlite3.connect(Path(world.server.db).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT presence, at FROM presence_log WHERE staff_id = ?"
                            " ORDER BY at, id", (staff_id,)).fetchall()
    finally:
        conn.close()
    total = 0.0
    for (presence, start), (_, end) in itertools.pairwise(rows):
        if presence == "online":
            total += end - start
    assert not rows or rows[-1][0] != "online"  # everyone went offline before reporting
    return total


async def kpis(world: World, **query: Any) -> dict[str, Any]:
    params = {"from": world.began - 1, "to": world.ended + 1, **query}
    status, body = await get(world, "/api/reports/kpis", params)
    assert status == 200, body
    return body["figures"]


async def get(world: World, path: str, params: dict[str, Any] | None = None,
              token: str | None = "ops") -> tuple[int, Any]:
    url = world.base + path
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return await http("GET", url, world.ops if token == "ops" else token)


async def get_text(world: World, path: str, params: dict[str, Any]) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session, session.get(
            world.base + path, params={k: str(v) for k, v in params.items()},
            headers={"Authorization": f"Bearer {world.ops}"}) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["Content-Type"], await resp.text()


# Tests -----------------------------------------------------------------------------------
async def test_kpis_match_what_happened(world: World) -> None:
    r, c = world.records, world.cids
    f = await kpis(world)
    assert f["conversations"]["value"] == 4
    assert sorted(f["conversations"]["conversation_ids"]) == sorted(c.values())
    assert f["missed"]["conversation_ids"] == [c["c3"]]
    assert f["missed_share"]["value"] == 0.25
    assert (f["async_left"]["value"], f["async_answered"]["value"]) == (1, 1)
    assert f["async_answered"]["conversation_ids"] == [c["c3"]]

    first_response = {n: first_staff_message(r[n]) - at(r[n], "opened") for n in ("c1", "c4")}
    assert first_staff_message(r["c2"]) is None  # dave never typed: not in the sample
    assert f["first_response_p50_s"]["value"] == pytest.approx(
        nearest_rank(list(first_response.values()), 50))
    assert f["first_response_p90_s"]["value"] == pytest.approx(max(first_response.values()))
    assert sorted(f["first_response_p50_s"]["conversation_ids"]) == sorted(
        [c["c1"], c["c4"]])

    waits = [at(r[n], "accepted") - at(r[n], "opened") for n in ("c1", "c2", "c4")]
    assert f["queue_wait_p50_s"]["value"] == pytest.approx(nearest_rank(waits, 50))
    assert f["queue_wait_p90_s"]["value"] == pytest.approx(nearest_rank(waits, 90))
    durations = [at(r[n], "closed") - at(r[n], "accepted") for n in ("c1", "c2", "c4")]
    assert f["conversation_duration_p50_s"]["value"] == pytest.approx(
        nearest_rank(durations, 50))
    assert f["conversation_duration_p90_s"]["value"] == pytest.approx(max(durations))
    assert f["conversation_duration_mean_s"]["value"] == pytest.approx(sum(durations) / 3)

    calls = [k["ended_at"] - k["started_at"] for n in ("c1", "c2") for k in r[n]["calls"]]
    assert len(calls) == 2 and f["calls"]["value"] == 2
    assert f["call_duration_p50_s"]["value"] == pytest.approx(min(calls))
    assert f["call_duration_p90_s"]["value"] == pytest.approx(max(calls))
    assert f["call_duration_mean_s"]["value"] == pytest.approx(sum(calls) / 2)

    assert sorted(f["orders"]["conversation_ids"]) == sorted([c["c1"], c["c4"]])
    assert f["conversion_rate"]["value"] == 0.5
    assert f["revenue_EUR"]["value"] == 949.0
    assert f["average_order_value_EUR"]["value"] == 474.5
    assert f["revenue_per_conversation_EUR"]["value"] == pytest.approx(949.0 / 4)

    # Lyon's staff (alice, bob, dave) online time at 36/h over Lyon's 3 conversations.
    lyon_s = sum(online_seconds(world, s) for s in ("alice", "bob", "dave"))
    assert 0 < lyon_s <= 2 * (world.ended - world.began)
    assert f["staffed_hours"]["value"] == pytest.approx(lyon_s / 3600)
    assert f["cost_per_conversation"]["value"] == pytest.approx(36 * lyon_s / 3600 / 3)
    assert sorted(f["cost_per_conversation"]["conversation_ids"]) == sorted(
        [c["c1"], c["c2"], c["c3"]])

    # Ratings 5/10 and 3/6: mean 4, top-2 share 1/2, NPS 50 - 50 = 0.
    assert f["ratings"]["value"] == 2
    assert f["satisfaction_avg"]["value"] == 4
    assert f["satisfaction_top2_share"]["value"] == 0.5
    assert f["nps"]["value"] == 0


async def test_kpi_filters(world: World) -> None:
    c = world.cids
    lyon = await kpis(world, store="lyon")
    assert sorted(lyon["conversations"]["conversation_ids"]) == sorted(
        [c["c1"], c["c2"], c["c3"]])
    # c1 was opened as chat but became a video call; c3 asked for video.
    video = await kpis(world, channel="video")
    assert sorted(video["conversations"]["conversation_ids"]) == sorted([c["c1"], c["c3"]])
    assert video["missed_share"]["value"] == 0.5
    audio = await kpis(world, channel="audio")
    assert audio["conversations"]["conversation_ids"] == [c["c2"]]
    assert audio["conversion_rate"]["value"] == 0
    chat = await kpis(world, channel="chat", store="paris")
    assert chat["conversations"]["conversation_ids"] == [c["c4"]]
    assert chat["cost_per_conversation"]["value"] is None  # Paris has no cost configured
    pianos = await kpis(world, skill="pianos")
    assert pianos["conversations"]["conversation_ids"] == [c["c3"]]
    # A period before anything happened is empty, not an error.
    status, body = await get(world, "/api/reports/kpis",
                             {"from": world.began - 7200, "to": world.began - 3600})
    assert status == 200 and body["figures"]["conversations"]["value"] == 0
    # Default period: the last 7 days, which includes everything here.
    status, body = await get(world, "/api/reports/kpis")
    assert status == 200 and body["figures"]["conversations"]["value"] == 4
    assert body["definitions"]["nps"].startswith("net promoter score")
    # ISO dates work too.
    day = datetime.fromtimestamp(world.began, UTC).date()
    status, body = await get(world, "/api/reports/kpis", {"from": day.isoformat(),
                                                          "ids": "false"})
    assert status == 200 and body["figures"]["conversations"]["value"] == 4
    assert "conversation_ids" not in body["figures"]["conversations"]


async def test_staff_report(world: World) -> None:
    r, c = world.records, world.cids
    status, body = await get(world, "/api/reports/staff",
                             {"from": world.began - 1, "to": world.ended + 1})
    assert status == 200, body
    staff = {s["staff_id"]: s["figures"] for s in body["staff"]}
    assert set(staff) == {"alice", "bob", "carol", "dave"}
    for staff_id in staff:
        assert staff[staff_id]["time_online_s"]["value"] == pytest.approx(
            online_seconds(world, staff_id))
    alice, dave, carol, bob = staff["alice"], staff["dave"], staff["carol"], staff["bob"]
    # Declining c2 does not make it alice's.
    assert alice["handled"]["conversation_ids"] == [c["c1"]]
    assert alice["calls"]["conversation_ids"] == [c["c1"]]
    assert alice["average_handling_time_s"]["value"] == pytest.approx(
        at(r["c1"], "closed") - at(r["c1"], "accepted"))
    assert alice["revenue_EUR"]["value"] == 899.0
    assert (alice["satisfaction_avg"]["value"], alice["nps"]["value"]) == (5, 100)
    assert dave["handled"]["conversation_ids"] == [c["c2"]]
    assert dave["calls"]["value"] == 1 and dave["orders"]["value"] == 0
    assert dave["average_handling_time_s"]["value"] == pytest.approx(
        at(r["c2"], "closed") - at(r["c2"], "accepted"))
    assert (dave["satisfaction_avg"]["value"], dave["nps"]["value"]) == (3, -100)
    assert carol["revenue_EUR"]["value"] == 50.0 and carol["ratings"]["value"] == 0
    assert bob["handled"]["value"] == 0 and bob["time_online_s"]["value"] == 0
    status, body = await get(world, "/api/reports/staff",
                             {"from": world.began - 1, "store": "paris"})
    assert [s["staff_id"] for s in body["staff"]] == ["carol"]


async def test_staffing_plan(world: World) -> None:
    r = world.records
    status, body = await get(world, "/api/reports/staffing",
                             {"target_share": 0.8, "target_wait_s": 60})
    assert status == 200, body
    plans = {p["store"]: p for p in body["stores"]}
    assert set(plans) == {"lyon", "paris"}
    lyon = plans["lyon"]
    assert lyon["concurrency"] == pytest.approx((2 + 1 + 1) / 3)  # alice 2, bob 1, dave 1
    assert len(lyon["recommended_staff"]) == 7
    assert all(len(day) == 24 for day in lyon["recommended_staff"])
    # Arrivals: c1, c2, c3 over 4 weeks, in the hour of the week each was opened (UTC).
    slots: dict[tuple[int, int], int] = {}
    for name in ("c1", "c2", "c3"):
        opened = datetime.fromtimestamp(at(r[name], "opened"), UTC)
        slots[(opened.weekday(), opened.hour)] = slots.get(
            (opened.weekday(), opened.hour), 0) + 1
    # AHT: fewer than 5 handled in any hour, so the store mean of c1 and c2.
    aht = sum(at(r[n], "closed") - at(r[n], "accepted") for n in ("c1", "c2")) / 2
    assert lyon["aht_s"] == pytest.approx(aht)
    for day in range(7):
        for hour in range(24):
            count = slots.get((day, hour), 0)
            assert lyon["arrivals_per_hour"][day][hour] == pytest.approx(count / 4)
            servers = required_servers(count / 4, aht, 0.8, 60)
            assert lyon["servers"][day][hour] == servers
            assert lyon["recommended_staff"][day][hour] == math.ceil(servers / (4 / 3) - 1e-9)
    missed = datetime.fromtimestamp(at(r["c3"], "opened"), UTC)
    assert lyon["missed_last_week"][missed.weekday()][missed.hour] == 1
    assert sum(map(sum, lyon["missed_last_week"])) == 1
    assert lyon["missed_last_week_conversations"] == [{
        "weekday": body["weekdays"][missed.weekday()], "hour": missed.hour,
        "conversation_ids": [world.cids["c3"]]}]
    assert sum(map(sum, plans["paris"]["missed_last_week"])) == 0
    status, body = await get(world, "/api/reports/staffing", {"store": "paris",
                                                             "tz": "Europe/Paris"})
    assert status == 200 and [p["store"] for p in body["stores"]] == ["paris"]
    assert body["tz"] == "Europe/Paris"


async def test_csv_matches_json(world: World) -> None:
    period = {"from": world.began - 1, "to": world.ended + 1}
    content_type, text = await get_text(world, "/api/reports/kpis", {**period, "format": "csv"})
    assert content_type.split(";")[0] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    _, body = await get(world, "/api/reports/kpis", period)
    figures = body["figures"]
    assert len(rows) == len(figures)
    for row in rows:
        key = row["figure"] if not row["currency"] else f"{row['figure']}_{row['currency']}"
        fig = figures[key]
        assert row["unit"] == fig["unit"] and int(row["count"]) == fig["count"]
        if fig["value"] is None:
            assert row["value"] == ""
        else:
            assert float(row["value"]) == pytest.approx(fig["value"])
        assert row["conversation_ids"].split() == fig["conversation_ids"]

    _, text = await get_text(world, "/api/reports/staff", {**period, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    _, body = await get(world, "/api/reports/staff", period)
    assert [row["staff_id"] for row in rows] == [s["staff_id"] for s in body["staff"]]
    for row, staff in zip(rows, body["staff"], strict=True):
        for key, fig in staff["figures"].items():
            if fig["value"] is None:
                assert row[key] == ""
            else:
                assert float(row[key]) == pytest.approx(fig["value"]), key
        assert row["handled_conversation_ids"].split() == \
            staff["figures"]["handled"]["conversation_ids"]

    _, text = await get_text(world, "/api/reports/staffing", {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    _, body = await get(world, "/api/reports/staffing")
    assert len(rows) == 168 * len(body["stores"])
    plans = {p["store"]: p for p in body["stores"]}
    for row in rows:
        plan = plans[row["store"]]
        day, hour = body["weekdays"].index(row["weekday"]), int(row["hour"])
        assert int(row["recommended_staff"]) == plan["recommended_staff"][day][hour]
        assert int(row["servers"]) == plan["servers"][day][hour]
        assert int(row["missed_last_week"]) == plan["missed_last_week"][day][hour]
        assert float(row["arrivals_per_hour"]) == pytest.approx(
            plan["arrivals_per_hour"][day][hour])


@pytest.mark.parametrize("path", REPORTS)
async def test_only_operators(world: World, path: str) -> None:
    server = world.server
    refusals = {None: (401, "unauthenticated"), "garbage.token.x": (401, "invalid_token"),
                server.token(Role.SHOPPER, "shp_x"): (403, "forbidden"),
                server.token(Role.STAFF, "alice"): (403, "forbidden")}
    for token, (want_status, code) in refusals.items():
        for params in (None, {"format": "csv"}):
            status, body = await get(world, path, params, token=token)
            assert status == want_status, (path, token, body)
            assert set(body) == {"error"} and body["error"]["code"] == code
    status, _ = await get(world, path)
    assert status == 200


@pytest.mark.parametrize(("path", "params", "mentions"), [
    ("/api/reports/kpis", {"from": "yesterday"}, "from"),
    ("/api/reports/kpis", {"to": "2024-13-01"}, "to"),
    ("/api/reports/kpis", {"from": "2024-05-08", "to": "2024-05-01"}, "from"),
    ("/api/reports/kpis", {"from": "2020-01-01", "to": "2024-01-01"}, "days"),
    ("/api/reports/kpis", {"from": "nan"}, "from"),
    ("/api/reports/kpis", {"channel": "fax"}, "channel"),
    ("/api/reports/kpis", {"format": "xml"}, "format"),
    ("/api/reports/kpis", {"ids": "maybe"}, "ids"),
    ("/api/reports/kpis", {"stor": "lyon"}, "stor"),
    ("/api/reports/kpis", {"skill": "x" * 65}, "skill"),
    ("/api/reports/staff", {"channel": "chat"}, "channel"),
    ("/api/reports/staff", {"to": "-5"}, "to"),
    ("/api/reports/staffing", {"target_share": "1"}, "target_share"),
    ("/api/reports/staffing", {"target_share": "0"}, "target_share"),
    ("/api/reports/staffing", {"target_share": "lots"}, "target_share"),
    ("/api/reports/staffing", {"target_wait_s": "-1"}, "target_wait_s"),
    ("/api/reports/staffing", {"target_wait_s": "inf"}, "target_wait_s"),
    ("/api/reports/staffing", {"weeks": "2.5"}, "weeks"),
    ("/api/reports/staffing", {"weeks": "13"}, "weeks"),
    ("/api/reports/staffing", {"store": "atlantis"}, "store"),
    ("/api/reports/staffing", {"tz": "Mars/Olympus"}, "tz"),
    ("/api/reports/staffing", {"from": "2024-01-01"}, "from"),
    ("/api/reports/daily", {"tz": "Mars/Olympus"}, "tz"),
    ("/api/reports/daily", {"channel": "fax"}, "channel"),
    ("/api/reports/daily", {"week": "2024-W01"}, "week"),
    ("/api/reports/weekly", {"week": "2024-W60"}, "week"),
    ("/api/reports/weekly", {"week": "last"}, "week"),
    ("/api/reports/weekly", {"format": "pdf"}, "format"),
    ("/api/reports/weekly", {"store": "atlantis"}, "store"),
    ("/api/reports/weekly", {"from": "2024-01-01"}, "from"),
])
async def test_invalid_parameters(world: World, path: str, params: dict[str, str],
                                  mentions: str) -> None:
    status, body = await get(world, path, params)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_message"
    assert mentions in body["error"]["message"], body


async def test_daily_series_adds_up_to_the_period(world: World) -> None:
    c = world.cids
    period = {"from": world.began - 1, "to": world.ended + 1}
    status, body = await get(world, "/api/reports/daily", period)
    assert status == 200, body
    days = body["days"]
    assert days and body["tz"] == "UTC"
    assert days[0]["from"] == pytest.approx(world.began - 1)
    assert days[-1]["to"] == pytest.approx(world.ended + 1)
    for day in days:
        start = datetime.fromisoformat(day["date"]).replace(tzinfo=UTC).timestamp()
        assert start <= day["from"] < day["to"] <= start + 86400
    total = {name: sum(d["figures"][name]["value"] for d in days)
             for name in ("conversations", "missed", "orders")}
    assert total == {"conversations": 4, "missed": 1, "orders": 2}
    ids = sorted(i for d in days for i in d["figures"]["conversations"]["conversation_ids"])
    assert ids == sorted(c.values())
    assert [i for d in days for i in d["figures"]["missed"]["conversation_ids"]] == [c["c3"]]
    assert sum(d["figures"].get("revenue_EUR", {"value": 0})["value"] for d in days) == 949
    rated = [d for d in days if d["figures"]["ratings"]["value"]]
    assert sum(d["figures"]["ratings"]["value"] for d in rated) == 2  # c1 5/10, c2 3/6
    if len(rated) == 1:  # seeded within one UTC day (unless it straddled midnight)
        assert rated[0]["figures"]["satisfaction_avg"]["value"] == 4

    _, text = await get_text(world, "/api/reports/daily", {**period, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["date"] for r in rows] == [d["date"] for d in days]
    for row, day in zip(rows, days, strict=True):
        assert int(row["conversations"]) == day["figures"]["conversations"]["value"]
        assert row["conversation_ids"].split() == \
            day["figures"]["conversations"]["conversation_ids"]


async def test_weekly_report_over_http(world: World) -> None:
    year, week, _ = datetime.fromtimestamp(world.began, UTC).isocalendar()
    if datetime.fromtimestamp(world.ended, UTC).isocalendar()[:2] != (year, week):
        pytest.skip("seeded across a week boundary")
    name = f"{year}-W{week:02d}"
    _, figures = await get(world, "/api/reports/kpis", {
        "from": datetime.fromisocalendar(year, week, 1).replace(tzinfo=UTC).timestamp()})
    content_type, text = await get_text(world, "/api/reports/weekly",
                                        {"week": name, "format": "md"})
    assert content_type.startswith("text/markdown")
    assert text.startswith(f"# Weekly report {name}, all stores")
    conversations = figures["figures"]["conversations"]["value"]
    assert conversations == 4
    assert f"| Conversations | {conversations} | {conversations} |" in text
    content_type, html = await get_text(world, "/api/reports/weekly",
                                        {"week": name, "store": "lyon"})
    assert content_type.startswith("text/html")
    assert html.count("<svg") >= 4 and "<script" not in html
    assert f"Weekly report {name}, store lyon" in html
