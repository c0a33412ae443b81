"""`shopcall bench`, the operator load tool: short real runs (a server the tool starts,
real WebSockets, real aiortc peers replaying pre-encoded media through the SFU) whose
reports must match what happened, and its pure logic (statistics, stream accounting,
capacity search) on known inputs. Timing goals live in the tool, never here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.load.capacity import Limits, conclusion, judge, next_sessions
from benchmarks.load.media_source import SendLog
from benchmarks.load.receiver_stats import StreamStats
from benchmarks.load.report import steady_cpu, timeline
from benchmarks.load.stats import LogHistogram, percentile
from signaling.model import Role

from .harness import SECRET, ServerProcess, http

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("sessions_over_time.png", "join_times.png", "server_cpu_memory.png",
         "loss_latency.png")


def bench(out: Path, *args: str, timeout: float = 100,
          media_path: str | None = None) -> dict[str, Any]:
    """Run `shopcall bench` as an operator would; return its JSON report. ``media_path``
    picks the generator's peers (--media-path; the tool's default is raw)."""
    env = dict(os.environ)
    if media_path is not None:
        args = (*args, "--media-path", media_path)
    done = subprocess.run(
        [sys.executable, "-m", "signaling", "bench", "--quiet", "--out", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("media_path", ["raw", "aiortc"])
def test_short_run_reports_what_happened(tmp_path: Path, media_path: str) -> None:
    """Both media paths, three-party calls (the SFU renegotiates with every peer)."""
    report = bench(tmp_path, "--sessions", "3", "--ramp", "3", "--call-seconds", "3",
                   "--chat-messages", "2", "--second-staff-share", "1",
                   media_path=media_path)
    assert report["generator"]["media_path"] == media_path
    for name in ("report.json", "summary.md", *PLOTS):
        assert (tmp_path / name).stat().st_size > 0, name
    for name in PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
    assert "3 of 3 completed" in (tmp_path / "summary.md").read_text()

    sessions = report["sessions"]
    assert (sessions["planned"], sessions["ok"], sessions["failed"]) == (3, 3, 0)
    assert sessions["failures_by_cause"] == {}
    # 2 chat messages per side: staff, shopper, staff after the shopper's opening line
    assert sessions["chat_messages_delivered"] == 3 * 3
    results = report["session_results"]
    assert len({r["staff_id"] for r in results}) == 3  # one staff member per consultation
    # The staff member invited the store's colleague into every call, who joined.
    assert sessions["features"]["second_staff"] == {"ok": 3}, sessions["features"]
    assert sum(sessions["feature_failures_by_cause"].values()) == 0

    # Join times: one per consultation for every step, ordered as the steps happen.
    for key in ("open_to_assigned", "escalate_to_first_packet",
                "escalate_to_first_keyframe", "escalate_to_first_packet_staff", "total"):
        assert report["join_ms"][key]["count"] == 3, key
    for r in results:
        t = r["times"]
        assert 0 < t["open_to_offered"] <= t["open_to_assigned"] < t["total"]
        assert 0 < t["escalate_to_call_started"] < t["escalate_to_first_packet"] \
            <= t["escalate_to_first_keyframe"]

    # Packets: what the receivers counted is what the server says it forwarded (a packet
    # still in flight when a peer closes may be forwarded but never counted).
    media = report["media"]
    forwarded = report["server_resources"]["forwarded_packets"]
    assert forwarded > 0
    assert 0.97 * forwarded <= media["packets_counted"] <= forwarded
    # Three parties per call, each receiving the other two: 6 streams of each kind a call.
    assert media["video"]["streams"] == 18 and media["audio"]["streams"] == 18, media
    assert media["loss_ratio"] < 0.05
    for r in results:
        for side, other in (("shopper", "staff"), ("staff", "shopper")):
            video = next(s for s in r["media"][side]["received"] if s["kind"] == "video")
            sent = r["media"][other]["sent_frames"]["video"]
            # every complete frame received was sent by the other side, and most arrived
            assert 0.5 * sent <= video["frames"] <= sent
    # Latency was measured against the senders' logs, for most packets (a stream's first
    # packets go by while its receiver learns the offsets; the colleague's streams start late
    # in a 3 s call, and a loaded machine stretches that).
    assert media["video"]["latency_ms"]["count"] >= 0.75 * media["video"]["packets"]
    assert media["audio"]["latency_ms"]["count"] >= 0.75 * media["audio"]["packets"]
    # The sampled receivers decoded real frames of the right size: the replay is valid.
    assert media["video"]["decoded_frames_sample"] > 0
    assert report["signalling_rtt_ms"]["count"] > 3 * 10
    resources = report["server_resources"]
    assert resources["rss_mb"]["max"] > 0
    assert resources["cpu_percent_of_one_core"]["max"] > 0
    assert report["generator"]["cpu_s"] > 0
    assert report["generator"]["machine"]["cpus"] == os.cpu_count()
    assert max(p["in_call"] for p in report["timeline"]) == sessions["peak_in_call"] >= 1


@pytest.mark.timeout(120)
def test_raw_media_path_counts_what_the_server_forwarded(tmp_path: Path) -> None:
    """The packet-level peers (raw_peer.py, the default) report the same figures as the
    aiortc ones: every packet the server forwarded counted, join times and first keyframe,
    latency matched to the senders' logs, and the sampled aiortc decoder still decodes
    the raw peers' packetization."""
    report = bench(tmp_path, "--sessions", "2", "--ramp", "4", "--call-seconds", "3",
                   "--chat-messages", "1", "--decode-sample", "1", media_path="raw")
    assert report["options"]["media_path"] == "raw"
    assert report["generator"]["media_path"] == "raw"
    assert (report["sessions"]["ok"], report["sessions"]["failed"]) == (2, 0)
    forwarded = report["server_resources"]["forwarded_packets"]
    media = report["media"]
    assert forwarded > 0
    assert 0.97 * forwarded <= media["packets_counted"] <= forwarded
    assert media["video"]["streams"] == 4 and media["audio"]["streams"] == 4, media
    assert media["loss_ratio"] < 0.05
    for key in ("escalate_to_first_packet", "escalate_to_first_keyframe",
                "escalate_to_first_packet_staff", "escalate_to_first_keyframe_staff",
                "escalate_to_first_frame"):
        assert report["join_ms"][key]["count"] == 2, key
    results = report["session_results"]
    paths = {side: {r["media"][side]["path"] for r in results} for side in ("shopper", "staff")}
    # One shopper decodes (aiortc); everyone else is a raw peer.
    assert paths == {"shopper": {"aiortc", "raw"}, "staff": {"raw"}}, paths
    for r in results:
        t = r["times"]
        assert 0 < t["escalate_to_call_started"] < t["escalate_to_first_packet"] \
            <= t["escalate_to_first_keyframe"]
        for side, other in (("shopper", "staff"), ("staff", "shopper")):
            video = next(s for s in r["media"][side]["received"] if s["kind"] == "video")
            sent = r["media"][other]["sent_frames"]["video"]
            assert 0.5 * sent <= video["frames"] <= sent
    # The SFU asks each new receiver's publisher for a keyframe; raw publishers restart.
    assert media["keyframe_requests_answered"] > 0
    assert media["video"]["latency_ms"]["count"] >= 0.75 * media["video"]["packets"]
    assert media["audio"]["latency_ms"]["count"] >= 0.75 * media["audio"]["packets"]
    assert media["video"]["decoded_frames_sample"] > 0
    assert report["generator"]["steady_cpu_percent_per_consultation"] is not None


@pytest.mark.timeout(90)
def test_run_without_staff_fails_every_session_unassigned(tmp_path: Path) -> None:
    report = bench(tmp_path, "--sessions", "2", "--ramp", "4", "--call-seconds", "1",
                   "--no-staff", "--assign-timeout", "2")
    sessions = report["sessions"]
    assert (sessions["ok"], sessions["failed"]) == (0, 2)
    assert sessions["failures_by_cause"] == {"not_assigned: timeout": 2}
    assert report["join_ms"]["open_to_assigned"]["count"] == 0
    assert report["media"]["packets_counted"] == 0
    assert report["server_resources"]["forwarded_packets"] == 0
    assert "not_assigned: timeout" in (tmp_path / "summary.md").read_text()
    for name in PLOTS:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name


@pytest.mark.timeout(90)
async def test_run_against_a_running_deployment_by_url(server: ServerProcess,
                                                       tmp_path: Path) -> None:
    """`--url`: stores and staff are created through the operator API of a server the tool
    did not start, staff tokens are minted with the deployment's secret."""
    operator = server.token(Role.OPERATOR, "ops")
    report = await asyncio.to_thread(
        bench, tmp_path, "--url", server.base_url, "--operator-token", operator,
        "--auth-secret", SECRET, "--client-address", "127.0.0.1", "--sessions", "2",
        "--ramp", "4", "--call-seconds", "2", "--chat-messages", "1")
    assert report["server"]["kind"] == "deployment"
    assert (report["sessions"]["ok"], report["sessions"]["failed"]) == (2, 0)
    forwarded = report["server_resources"]["forwarded_packets"]
    assert 0.97 * forwarded <= report["media"]["packets_counted"] <= forwarded
    status, body = await http("GET", server.base_url + "/api/staff", operator)
    assert status == 200
    staff = {m["id"]: m for m in body["staff"]}
    for r in report["session_results"]:
        assert staff[r["staff_id"]]["store"] == r["store"]


# Pure logic --------------------------------------------------------------------------------
def test_log_histogram_quantiles_are_within_one_percent_and_merge() -> None:
    values = [0.0001 * (1.07 ** i) for i in range(300)]
    a, b = LogHistogram(), LogHistogram()
    a.extend(values[::2])
    b.extend(values[1::2])
    a.merge(LogHistogram.from_json(json.loads(json.dumps(b.to_json()))))
    assert a.count == 300
    for q in (0.5, 0.95, 0.99):
        exact = percentile(values, q)
        assert exact is not None
        assert abs(a.quantile(q) - exact) / exact < 0.01  # type: ignore[operator]


def _stream(log: SendLog) -> tuple[StreamStats, LogHistogram]:
    latency = LogHistogram()
    return StreamStats("audio", 48000, lambda: [log], latency), latency


def test_stream_counts_loss_recovery_and_latency_through_an_offset() -> None:
    log = SendLog("audio")
    offset = 123_456_789  # what the SFU added to this receiver's timestamps
    for n in range(10):
        log.record(n * 960, bytes([n]) * 24, now=100.0 + n * 0.02)
    stream, latency = _stream(log)
    for n in range(10):
        if n in (4, 5):
            continue  # lost on the way
        stream.on_packet(100.0 + n * 0.02 + 0.005, 1000 + n, (offset + n * 960) & 0xFFFFFFFF,
                         True, 100, bytes([n]) * 24, False)
    assert (stream.packets, stream.expected, stream.lost) == (8, 10, 2)
    stream.on_rtx(1004)  # one comes back by retransmission
    assert (stream.lost, stream.recovered) == (1, 1)
    # Learning needs two frames that agree: the first packet is not timed.
    assert latency.count == 7
    assert abs(latency.quantile(0.5) - 0.005) < 0.0001  # type: ignore[operator]


def test_stream_counts_video_freezes_and_keyframe_completion() -> None:
    latency = LogHistogram()
    stream = StreamStats("video", 90000, lambda: [], latency)
    t, seq = 10.0, 0
    for frame in range(20):
        if frame == 10:
            t += 0.5  # half a second without frames: a freeze
        for part in range(3):
            stream.on_packet(t, seq, frame * 3000, part == 2, 1000,
                             b"x" if part == 0 else None, frame == 0 and part == 0)
            seq += 1
        t += 1 / 30
    assert stream.frames == 20
    assert stream.keyframe_at == 10.0
    assert stream.freezes == 1 and 0.5 < stream.freeze_s < 0.6
    assert stream.lost == 0


def _step(n: int, held: bool, generator: float = 10.0) -> dict[str, Any]:
    return {"sessions": n, "held": held, "broken": [] if held else ["loss 2% > 1%"],
            "cpu_percent_per_consultation": 1.5, "generator_cpu_percent": generator,
            "generator_saturated": generator >= 90}


def test_capacity_search_doubles_then_bisects() -> None:
    steps: list[dict[str, Any]] = []
    tried = []
    capacity = 11  # the server under this fake load holds up to 11
    while (n := next_sessions(steps, start=2, maximum=64)) is not None:
        tried.append(n)
        steps.append(_step(n, n <= capacity))
    assert tried == [2, 4, 8, 16, 12, 10, 11]
    result = conclusion(steps, 64)
    assert result["largest_ok"] == 11
    assert "N=12 broke" in result["stopped_because"]
    # A saturated generator ends the search with a lower bound.
    assert next_sessions([_step(2, True), _step(4, True, 95.0)], start=2, maximum=64) is None


def test_judge_names_the_broken_limits() -> None:
    report = {"sessions": {"planned": 10, "failed": 0},
              "media": {"loss_ratio": 0.02, "generator_lag_ms_max": 900.0},
              "udp_receive_drops": {"RcvbufErrors": 120},
              "join_ms": {"escalate_to_first_frame": {"p99": 2500.0}},
              "server_resources": {"cpu_percent_of_one_core": {"steady": 95.0, "max": 99.0},
                                   "cpu_percent_per_consultation": 9.5},
              "generator": {"cpu_percent_of_its_cpus": 40.0,
                            "steady_cpu_percent_of_its_cpus": 50.0}}
    verdict = judge(report, Limits())
    assert not verdict["held"]
    assert [b.split()[0] for b in verdict["broken"]] == ["loss", "join", "server"]
    # A starved generator and socket drops make the verdict suspect, and the search says so.
    assert len(verdict["suspect"]) == 2
    assert "generator, not the server" in conclusion([verdict], 64)["stopped_because"]


def test_steady_cpu_uses_the_plateau_of_calls() -> None:
    events = [(0.1, 0, 0, "started"), (0.2, 0, 0, "in_call"), (1.1, 0, 1, "started"),
              (1.2, 0, 1, "in_call"), (4.0, 0, 0, "done"), (4.1, 0, 1, "done")]
    line = timeline(events, 0.0)
    assert max(p["in_call"] for p in line) == 2
    series = [{"t": float(t), "cpu_percent": cpu} for t, cpu in
              [(1, 5.0), (2, 20.0), (3, 22.0), (4, 21.0), (5, 3.0)]]
    mean, peak, window = steady_cpu(series, line)
    assert peak == 2 and window == (1.5, 3.5)
    assert mean == pytest.approx(22.0)
