"""Every KPI definition on a small hand-made set of conversations, values worked out by hand.

The set (T = Monday 2024-05-06 00:00 UTC; offsets in seconds; stores lyon at 30/h and paris
without a cost):

  c1 lyon chat->video, guitars: opened T, accepted +10 (alice), first staff message +25,
     video call +100..+220, closed +310; rated 5/10; order 899 EUR.
  c2 lyon chat->audio, guitars: opened +1000, alice accepts +1030 and transfers +1330, dave
     accepts +1340, first staff message +1040, audio call +1400..+1460, closed +1630;
     rated 3/9; order 101 EUR.
  c3 lyon chat, pianos: opened +2000, missed, 1 asynchronous message, answered.
  c4 lyon video, guitars: opened +3000, bob accepts +3060, a call proposed but never
     started, closed +3660; rated 4/6; outcome "no order".
  c5 paris chat, guitars: opened +4000, missed, 2 asynchronous messages, none answered.
  c6 lyon chat, no skill: opened +5000, alice accepts +5005, first staff message +5020,
     still open; order 50 USD.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from signaling.erlang import required_servers
from signaling.kpis import (
    HIGH_LOSS_FRACTION,
    CallRecord,
    ConversationRecord,
    EventRecord,
    Figure,
    Filters,
    PresenceChange,
    QualityRecord,
    Segment,
    StaffInfo,
    attributed_store,
    conversation_kpis,
    daily_series,
    handling_segments,
    hour_of_week,
    online_intervals,
    percentile,
    reporting_channel,
    staff_kpis,
    staffing_plan,
)

pytestmark = pytest.mark.unit

T = datetime(2024, 5, 6, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
END = T + 7200


def rec(cid: str, **kw: object) -> ConversationRecord:
    base: dict[str, object] = {"store": "lyon", "channel": "chat", "skill": "guitars"}
    return ConversationRecord(id=cid, **{**base, **kw})  # type: ignore[arg-type]


RECORDS = [
    rec("c1", channel="video", opened_at=T, accepted_at=T + 10, first_staff_message_at=T + 25,
        closed_at=T + 310, staff_id="alice", segments=(Segment("alice", T + 10, T + 310),),
        calls=(CallRecord("k1", "video", T + 100, T + 220),), satisfaction=5,
        recommendation=10, order_placed=True, order_value=899.0, currency="EUR"),
    rec("c2", channel="audio", opened_at=T + 1000, accepted_at=T + 1030,
        first_staff_message_at=T + 1040, closed_at=T + 1630, staff_id="dave",
        segments=(Segment("alice", T + 1030, T + 1330), Segment("dave", T + 1340, T + 1630)),
        calls=(CallRecord("k2", "audio", T + 1400, T + 1460),), satisfaction=3,
        recommendation=9, order_placed=True, order_value=101.0, currency="EUR"),
    rec("c3", skill="pianos", opened_at=T + 2000, missed=True, async_left=1,
        async_answered=1),
    rec("c4", channel="video", opened_at=T + 3000, accepted_at=T + 3060, closed_at=T + 3660,
        staff_id="bob", segments=(Segment("bob", T + 3060, T + 3660),),
        calls=(CallRecord("k3", "video", None, T + 3100),), satisfaction=4, recommendation=6,
        order_placed=False),
    rec("c5", store="paris", opened_at=T + 4000, missed=True, async_left=2),
    rec("c6", skill=None, opened_at=T + 5000, accepted_at=T + 5005,
        first_staff_message_at=T + 5020, staff_id="alice",
        segments=(Segment("alice", T + 5005, None),), order_placed=True, order_value=50.0,
        currency="USD"),
]
STAFF = [StaffInfo("alice", "Alice", "lyon", 2), StaffInfo("bob", "Bob", "lyon", 1),
         StaffInfo("carol", "Carol", "paris", 1), StaffInfo("dave", "Dave", "lyon", 1)]
# alice: online since before the period until +3600 (3600 s in it); bob: +1800..+2700 and
# +5400..end (900 + 1800 = 2700 s); dave: +1300..+1700 (400 s); carol: all along (7200 s).
PRESENCE = [
    PresenceChange("alice", "online", T - 3600), PresenceChange("alice", "offline", T + 3600),
    PresenceChange("bob", "online", T + 1800), PresenceChange("bob", "away", T + 2700),
    PresenceChange("bob", "online", T + 5400),
    PresenceChange("dave", "online", T + 1300), PresenceChange("dave", "offline", T + 1700),
    PresenceChange("carol", "online", T),
]
COST = {"lyon": 30.0, "paris": None}


def figures(filters: Filters | None = None) -> dict[str, Figure]:
    out = conversation_kpis(RECORDS, filters or Filters(), staff=STAFF, presence=PRESENCE,
                            cost_per_hour=COST, start=T, end=END)
    return {f.key: f for f in out}


def test_every_period_figure_by_hand() -> None:
    f = figures()
    assert (f["conversations"].value, f["conversations"].conversation_ids) == (
        6, ("c1", "c2", "c3", "c4", "c5", "c6"))
    assert (f["missed"].value, f["missed"].conversation_ids) == (2, ("c3", "c5"))
    assert f["missed_share"].value == pytest.approx(2 / 6)
    assert (f["async_left"].value, f["async_left"].conversation_ids) == (3, ("c3", "c5"))
    assert (f["async_answered"].value, f["async_answered"].conversation_ids) == (1, ("c3",))
    # First response: c1 25, c2 40, c6 20 -> sorted 20, 25, 40: rank ceil(1.5) = 2 and
    # ceil(2.7) = 3. Ids come in ascending value order, so the k-th id is the k-th value.
    assert f["first_response_p50_s"].value == 25
    assert f["first_response_p90_s"].value == 40
    assert f["first_response_p50_s"].conversation_ids == ("c6", "c1", "c2")
    # Queue wait: c1 10, c2 30, c4 60, c6 5 -> 5, 10, 30, 60: ranks 2 and ceil(3.6) = 4.
    assert (f["queue_wait_p50_s"].value, f["queue_wait_p90_s"].value) == (10, 60)
    # Duration, accepted and closed only: c1 300, c2 600, c4 600 (c6 is still open).
    assert f["conversation_duration_p50_s"].value == 600
    assert f["conversation_duration_p90_s"].value == 600
    assert f["conversation_duration_mean_s"].value == 500
    assert f["conversation_duration_mean_s"].conversation_ids == ("c1", "c2", "c4")
    # Calls that started: c1 (120 s) and c2 (60 s); c4's proposal never started.
    assert (f["calls"].value, f["calls"].conversation_ids) == (2, ("c1", "c2"))
    assert (f["call_duration_p50_s"].value, f["call_duration_p90_s"].value) == (60, 120)
    assert f["call_duration_mean_s"].value == 90
    # Orders: c1, c2, c6 (c4 reported "no order") out of 6 conversations.
    assert (f["orders"].value, f["orders"].conversation_ids) == (3, ("c1", "c2", "c6"))
    assert f["conversion_rate"].value == 0.5
    assert f["revenue_EUR"].value == 1000 and f["revenue_EUR"].conversation_ids == ("c1", "c2")
    assert f["average_order_value_EUR"].value == 500
    assert f["revenue_per_conversation_EUR"].value == pytest.approx(1000 / 6)
    assert (f["revenue_USD"].value, f["average_order_value_USD"].value) == (50, 50)
    assert f["revenue_per_conversation_USD"].value == pytest.approx(50 / 6)
    # Cost: lyon staff online 3600 + 2700 + 400 = 6700 s at 30/h over lyon's 5
    # conversations (carol is in paris, which has no cost configured).
    assert f["staffed_hours"].value == pytest.approx(6700 / 3600)
    assert f["staff_cost"].value == pytest.approx(30 * 6700 / 3600)
    assert f["cost_per_conversation"].value == pytest.approx(30 * 6700 / 3600 / 5)
    assert f["cost_per_conversation"].conversation_ids == ("c1", "c2", "c3", "c4", "c6")
    # Ratings c1 5/10, c2 3/9, c4 4/6: mean 4, top-2 share 2/3, NPS (2 - 1) / 3 = 33.3.
    assert (f["ratings"].value, f["ratings"].conversation_ids) == (3, ("c1", "c2", "c4"))
    assert f["satisfaction_avg"].value == 4
    assert f["satisfaction_top2_share"].value == pytest.approx(2 / 3)
    assert f["nps"].value == pytest.approx(100 / 3)


def test_filters() -> None:
    lyon = figures(Filters(store="lyon"))
    assert lyon["conversations"].conversation_ids == ("c1", "c2", "c3", "c4", "c6")
    assert lyon["missed"].value == 1 and lyon["async_left"].value == 1
    video = figures(Filters(channel="video"))
    assert video["conversations"].conversation_ids == ("c1", "c4")
    assert video["conversion_rate"].value == 0.5
    # Staff time is not split by channel: cost per conversation is the stores' average.
    assert video["cost_per_conversation"].value == pytest.approx(30 * 6700 / 3600 / 5)
    pianos = figures(Filters(skill="pianos"))
    assert pianos["conversations"].conversation_ids == ("c3",)
    assert pianos["queue_wait_p50_s"].value is None  # nothing accepted: no sample
    assert pianos["satisfaction_avg"].value is None and pianos["nps"].value is None
    assert "revenue_EUR" not in pianos
    paris = figures(Filters(store="paris"))  # no cost configured: no cost figures
    assert paris["cost_per_conversation"].value is None
    assert paris["staffed_hours"].value is None
    none = figures(Filters(store="nowhere"))
    assert none["conversations"].value == 0 and none["missed_share"].value is None


def test_staff_performance() -> None:
    reports = {r.staff_id: {f.key: f for f in r.figures}
               for r in staff_kpis(RECORDS, STAFF, PRESENCE, start=T, end=END)}
    assert set(reports) == {"alice", "bob", "carol", "dave"}
    alice = reports["alice"]
    assert alice["time_online_s"].value == 3600
    assert alice["handled"].conversation_ids == ("c1", "c2", "c6")
    # c1's video call started during alice's segment; c2's audio call during dave's.
    assert alice["calls"].conversation_ids == ("c1",)
    # c1 300 s + her 300 s of c2; c6 is still open so it is left out.
    assert alice["average_handling_time_s"].value == 300
    assert alice["average_handling_time_s"].conversation_ids == ("c1", "c2")
    # Outcome and rating go to the last holder: c1 and c6 are alice's, c2 is dave's.
    assert alice["orders"].conversation_ids == ("c1", "c6")
    assert (alice["revenue_EUR"].value, alice["revenue_USD"].value) == (899, 50)
    assert (alice["satisfaction_avg"].value, alice["nps"].value) == (5, 100)
    dave = reports["dave"]
    assert (dave["time_online_s"].value, dave["handled"].value) == (400, 1)
    assert dave["calls"].conversation_ids == ("c2",)
    assert dave["average_handling_time_s"].value == 290
    assert dave["revenue_EUR"].value == 101
    assert (dave["satisfaction_avg"].value, dave["satisfaction_top2_share"].value) == (3, 0)
    assert dave["nps"].value == 100  # 9 is a promoter
    bob = reports["bob"]
    assert bob["time_online_s"].value == 2700
    assert (bob["calls"].value, bob["average_handling_time_s"].value) == (0, 600)
    assert bob["orders"].value == 0 and "revenue_EUR" not in bob
    assert (bob["nps"].value, bob["satisfaction_top2_share"].value) == (-100, 1)
    carol = reports["carol"]
    assert carol["time_online_s"].value == 7200 and carol["handled"].value == 0
    assert carol["average_handling_time_s"].value is None
    lyon = staff_kpis(RECORDS, STAFF, PRESENCE, start=T, end=END, store="lyon")
    assert [r.staff_id for r in lyon] == ["alice", "bob", "dave"]


def test_percentile_nearest_rank() -> None:
    # The nearest-rank example of Wikipedia's "Percentile" article: 15, 20, 35, 40, 50.
    values = [50, 15, 40, 20, 35]
    assert [percentile(values, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert percentile([], 50) is None
    assert percentile([7.5], 90) == 7.5
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_segments_channel_store_and_presence() -> None:
    events = [EventRecord("opened", 0, "shopper:s"), EventRecord("assigned", 1),
              EventRecord("declined", 2, "staff:bob"), EventRecord("accepted", 3, "staff:alice"),
              EventRecord("transferred", 5, "staff:alice"), EventRecord("accepted", 6,
                                                                         "staff:dave"),
              EventRecord("staff_lost", 8), EventRecord("accepted", 9, "staff:carol"),
              EventRecord("closed", 12, "shopper:s")]
    assert handling_segments(events) == (Segment("alice", 3, 5), Segment("dave", 6, 8),
                                         Segment("carol", 9, 12))
    assert handling_segments(events[:4]) == (Segment("alice", 3, None),)
    started = CallRecord("k", "audio", 1.0, 2.0)
    proposed = CallRecord("k", "video", None, 2.0)
    assert reporting_channel("chat", [started, proposed]) == "audio"
    assert reporting_channel("video", [started]) == "video"
    assert reporting_channel("chat", [proposed]) == "chat"
    video = CallRecord("v", "video", 1.0, 2.0)
    assert reporting_channel("chat", [video], tryon=True) == "video_tryon"
    assert reporting_channel("chat", [video], tryon=False) == "video"
    assert reporting_channel("chat", [started], tryon=True) == "audio"  # no video, no try-on
    assert attributed_store("paris", "lyon") == "paris"
    assert attributed_store(None, "lyon") == "lyon"
    assert attributed_store(None, None) is None
    spans = online_intervals(PRESENCE, T, END)
    assert spans["bob"] == [(T + 1800, T + 2700), (T + 5400, END)]
    assert spans["alice"] == [(T, T + 3600)]  # clipped to the period's start


def test_hour_of_week() -> None:
    assert hour_of_week(T, UTC) == 0
    assert hour_of_week(T - 1, UTC) == 167  # Sunday 23:59:59
    assert hour_of_week(T + 10 * 3600 + 59, UTC) == 10
    assert hour_of_week(T, ZoneInfo("Europe/Paris")) == 2  # UTC+2 in May


def test_staffing_plan() -> None:
    """Four weeks of history ending at T + 28 days.

    Monday 10:00 gets 200 conversations a week of 180 s each: 200/h, 10 Erlangs, the
    published example (see test_erlang): 14 servers for 80% within 20 s; at 2 conversations
    per person that is 7 people. Tuesday 09:00 gets one conversation in each of two weeks,
    handled in 600 s: too few samples for its own AHT, so it uses the store's mean
    (800 x 180 + 2 x 600) / 802; 2 / 4 weeks = 0.5 per hour. A missed conversation on
    Wednesday 15:00 of the last week shows in `missed_last_week`; one three weeks earlier
    counts as an arrival only. Paris traffic is somebody else's.
    """
    records = []
    for week in range(4):
        for i in range(200):
            start = T + week * 7 * 86400 + 10 * 3600 + i * 10
            records.append(rec(f"m{week}-{i}", opened_at=start,
                               segments=(Segment("alice", start + 5, start + 185),)))
    for week in (1, 2):
        start = T + week * 7 * 86400 + 24 * 3600 + 9 * 3600
        records.append(rec(f"t{week}", opened_at=start,
                           segments=(Segment("bob", start, start + 600),)))
    wednesday_15 = 2 * 24 + 15
    records.append(rec("late", opened_at=T + 3 * 7 * 86400 + wednesday_15 * 3600 + 60,
                       missed=True))
    records.append(rec("early", opened_at=T + wednesday_15 * 3600, missed=True))
    records.append(rec("p", store="paris", opened_at=T + 10 * 3600))
    end = T + 28 * 86400
    plan = staffing_plan(records, store="lyon", history_start=T, history_end=end,
                         last_week_start=end - 7 * 86400, tz=UTC, concurrency=2.0,
                         default_aht_s=240, target_share=0.8, target_wait_s=20)
    assert plan.arrivals == 800 + 2 + 2
    assert plan.aht_samples == 802
    store_aht = (800 * 180 + 2 * 600) / 802
    assert plan.aht_s == pytest.approx(store_aht)
    monday_10 = plan.hours[10]
    assert (monday_10.weekday, monday_10.hour) == (0, 10)
    assert monday_10.arrivals_per_hour == 200 and monday_10.aht_s == 180
    assert (monday_10.servers, monday_10.staff) == (14, 7)
    assert monday_10.service_level == pytest.approx(0.8883500191794669)
    tuesday_9 = plan.hours[24 + 9]
    assert tuesday_9.arrivals_per_hour == 0.5
    assert tuesday_9.aht_s == pytest.approx(store_aht)
    servers = required_servers(0.5, store_aht, 0.8, 20)
    assert servers == 1 and tuesday_9.servers == servers and tuesday_9.staff == 1
    wednesday = plan.hours[wednesday_15]
    assert wednesday.missed_last_week == ("late",)
    assert wednesday.arrivals_per_hour == 0.5  # both missed ones are demand
    assert sum(len(h.missed_last_week) for h in plan.hours) == 1
    quiet = plan.hours[100]
    assert (quiet.arrivals_per_hour, quiet.servers, quiet.staff) == (0, 0, 0)
    assert len(plan.hours) == 168
    # One conversation at a time per person: staff = servers.
    single = staffing_plan(records, store="lyon", history_start=T, history_end=end,
                           last_week_start=end - 7 * 86400, tz=UTC, concurrency=1.0,
                           default_aht_s=240, target_share=0.8, target_wait_s=20)
    assert single.hours[10].staff == 14


# Call quality joined to results ------------------------------------------------------------
def _call(call_id: str, kind: str = "video", quality: QualityRecord | None = None
          ) -> CallRecord:
    return CallRecord(call_id, kind, T + 10, T + 70, quality)


QUALITY_RECORDS = [
    # q1: froze twice (one call) and sold.
    rec("q1", opened_at=T, calls=(_call("a1", quality=QualityRecord(2, 0, 0.01)),),
        order_placed=True),
    # q2: a clean audio call, then a video call that lost 8%: trouble; no order.
    rec("q2", opened_at=T + 1, calls=(_call("a2", "audio", QualityRecord(0, 0, None)),
                                      _call("a3", quality=QualityRecord(0, 0, 0.08))),
        order_placed=False),
    # q3: one audio-only fallback; exactly 5% loss is not "high" (strictly above); sold.
    rec("q3", opened_at=T + 2, calls=(_call("a4", quality=QualityRecord(0, 1, 0.05)),),
        order_placed=True),
    # q4: a clean video call (2% loss); sold.
    rec("q4", opened_at=T + 3, calls=(_call("a5", quality=QualityRecord(0, 0, 0.02)),),
        order_placed=True),
    # q5: a clean audio call; no outcome reported (counts as no order).
    rec("q5", opened_at=T + 4, calls=(_call("a6", "audio", QualityRecord(0, 0, None)),)),
    # q6: a call nobody measured (no media server): left out of every quality figure.
    rec("q6", opened_at=T + 5, calls=(_call("a7"),), order_placed=True),
    # q7: chat only.
    rec("q7", opened_at=T + 6, order_placed=True),
]


def test_call_quality_joined_to_results() -> None:
    f = {x.key: x for x in conversation_kpis(QUALITY_RECORDS, start=T, end=END)}
    # Measured calls: a1, a2, a3, a4, a5, a6 (six; a7 was not measured). Ids: one per call.
    assert (f["calls_measured"].value, f["calls_measured"].conversation_ids) == (
        6, ("q1", "q2", "q2", "q3", "q4", "q5"))
    assert (f["calls_with_freezes"].value, f["calls_with_freezes"].conversation_ids) == (
        1, ("q1",))
    assert f["freeze_share"].value == pytest.approx(1 / 6)
    assert (f["calls_with_fallbacks"].value, f["calls_with_fallbacks"].conversation_ids) == (
        1, ("q3",))
    assert f["fallback_share"].value == pytest.approx(1 / 6)
    assert HIGH_LOSS_FRACTION == 0.05
    assert (f["calls_with_high_loss"].value, f["calls_with_high_loss"].conversation_ids) == (
        1, ("q2",))
    assert f["high_loss_share"].value == pytest.approx(1 / 6)
    assert (f["calls_with_trouble"].value, f["calls_with_trouble"].conversation_ids) == (
        3, ("q1", "q2", "q3"))
    assert f["trouble_share"].value == 0.5
    # Conversations with a troubled call: q1, q2, q3, orders q1 and q3 -> 2/3. Without:
    # q4 and q5, order q4 -> 1/2. q6 (unmeasured) and q7 (no call) are in neither group.
    assert f["conversion_with_trouble"].value == pytest.approx(2 / 3)
    assert f["conversion_with_trouble"].conversation_ids == ("q1", "q2", "q3")
    assert f["conversion_without_trouble"].value == 0.5
    assert f["conversion_without_trouble"].conversation_ids == ("q4", "q5")
    # No measured call at all: counts are zero, shares and conversions have no value.
    none = {x.key: x for x in conversation_kpis(QUALITY_RECORDS[5:], start=T, end=END)}
    assert none["calls_measured"].value == 0
    assert none["trouble_share"].value is None
    assert none["conversion_with_trouble"].value is None
    assert none["conversion_without_trouble"].value is None


def test_daily_series() -> None:
    # UTC: Sunday 5 May is empty, Monday 6 May holds all six, Tuesday 7 May is cut at 01:00.
    days = daily_series(RECORDS, start=T - 86400, end=T + 86400 + 3600, tz=UTC)
    assert [d.date for d in days] == ["2024-05-05", "2024-05-06", "2024-05-07"]
    assert [(d.start, d.end) for d in days] == [
        (T - 86400, T), (T, T + 86400), (T + 86400, T + 86400 + 3600)]
    sunday, monday, tuesday = ({f.key: f for f in d.figures} for d in days)
    assert sunday["conversations"].value == 0 and sunday["conversion_rate"].value is None
    assert (monday["conversations"].value, monday["missed"].value) == (6, 2)
    assert monday["missed"].conversation_ids == ("c3", "c5")
    assert (monday["orders"].value, monday["conversion_rate"].value) == (3, 0.5)
    assert (monday["revenue_EUR"].value, monday["revenue_USD"].value) == (1000, 50)
    assert monday["satisfaction_avg"].value == 4 and monday["ratings"].value == 3
    assert tuesday["conversations"].value == 0
    # New York is 4 h behind UTC in May: the same conversations fall on Sunday 5 May there.
    ny = daily_series(RECORDS, Filters(store="lyon"), start=T, end=END,
                      tz=ZoneInfo("America/New_York"))
    assert [(d.date, d.start, d.end) for d in ny] == [("2024-05-05", T, END)]
    assert {f.key: f for f in ny[0].figures}["conversations"].conversation_ids == (
        "c1", "c2", "c3", "c4", "c6")
    assert daily_series(RECORDS, start=END, end=T, tz=UTC) == []
