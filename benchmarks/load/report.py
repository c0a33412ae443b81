"""Turning what the workers and the monitor measured into the report: pure functions, no
I/O, so they test fast. ``aggregate`` builds the JSON document (every figure), and
``markdown`` renders its summary.

Definitions:

* join times, per consultation: ``open_to_assigned`` (conversation.open sent -> the shopper
  gets conversation.accepted), ``escalate_to_first_packet`` (call.propose sent -> first
  remote RTP packet at the shopper: video for video calls, audio otherwise),
  ``escalate_to_first_keyframe`` (-> every packet of the first remote keyframe arrived, i.e.
  the first decodable frame), the same two at the staff side (``_staff``);
  ``escalate_to_first_frame`` is the keyframe time for video calls and the first audio
  packet for audio-only calls: the "join" limit of --find-capacity.
* loss: over every receiving stream, packets never received (neither originally nor by
  retransmission) / packets the receiver should have got (sequence range).
* server CPU: the derivative of the server's CPU seconds, as % of one core; "steady" is the
  window where the most consultations were in call at once, and per consultation is
  (steady - idle) / consultations in call.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from .. import machine
from .stats import LogHistogram, percentile, summary

JOIN_KEYS = ("open_to_offered", "open_to_assigned", "escalate_to_call_started",
             "escalate_to_first_packet", "escalate_to_first_keyframe",
             "escalate_to_first_packet_staff", "escalate_to_first_keyframe_staff",
             "escalate_to_first_frame", "total")
STATE_ORDER = ("started", "assigned", "in_call", "done", "failed")


def group_causes(causes: Sequence[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cause in causes:
        if cause:
            out[cause] = out.get(cause, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def timeline(events: Sequence[tuple[float, int, int, str]], t0: float,
             step_s: float = 0.5) -> list[dict[str, Any]]:
    """Sessions over time from (wall time, worker, index, state) events: at each step, how
    many are up (started, not finished), in call, done and failed."""
    if not events:
        return []
    ordered = sorted(events)
    end = ordered[-1][0]
    state: dict[tuple[int, int], str] = {}
    out = []
    i = 0
    t = t0
    while True:
        while i < len(ordered) and ordered[i][0] <= t:
            _, worker, index, st = ordered[i]
            state[(worker, index)] = st
            i += 1
        values = list(state.values())
        out.append({"t": round(t - t0, 3),
                    "up": sum(v in ("started", "assigned", "in_call") for v in values),
                    "in_call": values.count("in_call"), "done": values.count("done"),
                    "failed": values.count("failed")})
        if t > end:
            break
        t += step_s
    return out


def cpu_series(samples: Sequence[Any], t0: float) -> list[dict[str, Any]]:
    """Server CPU % of one core between consecutive samples, RSS in MB, per-core busy %."""
    out = []
    for a, b in pairwise(samples):
        dt = b.t - a.t
        cpu = None
        if a.cpu_s is not None and b.cpu_s is not None and dt > 0:
            cpu = round(100 * (b.cpu_s - a.cpu_s) / dt, 2)
        generator = None
        if a.generator_cpu_s is not None and b.generator_cpu_s is not None and dt > 0 \
                and b.generator_cpu_s >= a.generator_cpu_s:  # (not when a worker exited)
            generator = round(100 * (b.generator_cpu_s - a.generator_cpu_s) / dt, 2)
        out.append({"t": round(b.t - t0, 3), "cpu_percent": cpu,
                    "generator_cpu_percent": generator,
                    "rss_mb": round(b.rss_bytes / 2**20, 1) if b.rss_bytes else None,
                    "cores_busy_percent": [round(100 * c, 1) for c in b.cores_busy],
                    "forwarded_packets": b.forwarded_packets,
                    "media_sessions": b.media_sessions})
    return out


def steady_cpu(series: Sequence[dict[str, Any]], sessions: Sequence[dict[str, Any]],
               key: str = "cpu_percent"
               ) -> tuple[float | None, int, tuple[float, float] | None]:
    """(mean CPU % in the window where the most calls ran at once, that number of calls,
    the window). Samples whose whole interval lies inside the plateau count."""
    in_call = [p["in_call"] for p in sessions]
    if not in_call or max(in_call) == 0:
        return None, 0, None
    peak = max(in_call)
    times = [p["t"] for p in sessions if p["in_call"] == peak]
    window = (min(times), max(times))
    previous_t: float | None = None
    values = []
    for point in series:
        if previous_t is not None and point.get(key) is not None \
                and previous_t >= window[0] and point["t"] <= window[1] + 1e-9:
            values.append(point[key])
        previous_t = point["t"]
    if not values:  # a plateau shorter than a sample: the samples overlapping it
        values = [p[key] for p in series if p.get(key) is not None
                  and window[0] <= p["t"] <= window[1] + 1.0]
    if not values:
        return None, peak, window
    return sum(values) / len(values), peak, window


def media_figures(sessions: Sequence[dict[str, Any]], latency: dict[str, LogHistogram]
                  ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("audio", "video"):
        streams = [r for s in sessions for side in (s.get("media") or {}).values()
                   for r in side["received"] if r["kind"] == kind and r["packets"]]
        expected = sum(r["expected"] for r in streams)
        lost = sum(r["lost"] for r in streams)
        ratios = [r["lost"] / r["expected"] for r in streams if r["expected"]]
        out[kind] = {
            "streams": len(streams),
            "packets": sum(r["packets"] for r in streams),
            "expected": expected, "lost": lost,
            "loss_ratio": round(lost / expected, 6) if expected else None,
            "stream_loss_percent": summary(ratios, 100, 3),
            "retransmissions_received": sum(r["rtx"] for r in streams),
            "recovered": sum(r["recovered"] for r in streams),
            "jitter_ms": summary([r["jitter_ms"] for r in streams], 1, 3),
            "latency_ms": latency[kind].summary(1000, 2),
        }
        if kind == "video":
            frames = sum(r["frames"] for r in streams)
            video_s = sum(s["times"].get("media_s") or 0 for s in sessions
                          if s["kind"] == "video") * 2
            out[kind].update({
                "frames": frames,
                "freezes": sum(r["freezes"] for r in streams),
                "freeze_s": round(sum(r["freeze_s"] for r in streams), 3),
                "freezes_per_minute": round(sum(r["freezes"] for r in streams)
                                            / (video_s / 60), 3) if video_s else None,
                "decoded_frames_sample": sum(r["decoded_frames"] for r in streams),
                "decoding_receivers": sum(1 for r in streams if r["decoded_frames"]),
            })
    sides = [side for s in sessions for side in (s.get("media") or {}).values()]
    out["keyframe_requests_answered"] = sum(side["keyframe_requests"] for side in sides)
    out["nacks_received"] = sum(side.get("nacks_received", 0) for side in sides)
    out["generator_lag_ms_max"] = max((side["generator_lag_ms"] for side in sides),
                                      default=None)
    total = sum(out[k]["expected"] for k in ("audio", "video"))
    lost = sum(out[k]["lost"] for k in ("audio", "video"))
    out["loss_ratio"] = round(lost / total, 6) if total else None
    out["packets_counted"] = out["audio"]["packets"] + out["video"]["packets"]
    return out


def aggregate(*, options: dict[str, Any], workers: Sequence[dict[str, Any]],
              events: Sequence[tuple[float, int, int, str]], samples: Sequence[Any],
              run_t0: float, run_t1: float, idle_cpu_percent: float | None,
              cpu_source: str, forwarded_delta: float | None, server: dict[str, Any],
              parent_cpu_s: float, worker_errors: Sequence[str] = (),
              udp_drops: dict[str, int] | None = None) -> dict[str, Any]:
    sessions = [s for w in workers for s in w["sessions"]]
    ok = [s for s in sessions if s["ok"]]
    for s in sessions:  # the "join" figure: first decodable frame (or audio packet)
        t = s["times"]
        t["escalate_to_first_frame"] = (t.get("escalate_to_first_keyframe")
                                        if s["kind"] == "video"
                                        else t.get("escalate_to_first_packet"))
    rtt, latency = LogHistogram(), {"audio": LogHistogram(), "video": LogHistogram()}
    for w in workers:
        rtt.merge(LogHistogram.from_json(w["rtt"]))
        for kind in latency:
            latency[kind].merge(LogHistogram.from_json(w["latency"][kind]))
    join = {key: summary([s["times"][key] for s in sessions
                          if s["times"].get(key) is not None], 1000, 1) for key in JOIN_KEYS}
    line = timeline(events, run_t0)
    series = cpu_series(samples, run_t0)
    steady, peak_calls, window = steady_cpu(series, line)
    generator_steady, _, _ = steady_cpu(series, line, "generator_cpu_percent")
    cpu_values = [p["cpu_percent"] for p in series if p["cpu_percent"] is not None]
    rss = [p["rss_mb"] for p in series if p["rss_mb"] is not None]
    media = media_figures(sessions, latency)
    wall = max(run_t1 - run_t0, 1e-9)
    per_consultation = None
    if steady is not None and peak_calls:
        per_consultation = round((steady - (idle_cpu_percent or 0.0)) / peak_calls, 3)
    generator_cpu = sum(w["cpu_s"] for w in workers)
    generator_cores = sorted({c for w in workers for c in w["cpus"]})
    return {
        "options": options,
        "server": server,
        "duration_s": round(wall, 2),
        "sessions": {
            "planned": len(sessions), "ok": len(ok), "failed": len(sessions) - len(ok),
            "failures_by_cause": group_causes([s["cause"] for s in sessions]),
            "feature_failures_by_cause": group_causes(
                [f for s in sessions for f in s["feature_failures"]]),
            "features": {name: group_causes([s["features"].get(name) for s in sessions])
                         for name in ("tryon", "second_staff")},
            "peak_in_call": peak_calls,
            "chat_messages_delivered": sum(s["chat_messages_delivered"] for s in sessions),
            "worker_errors": list(worker_errors),
            "staff_online": sum(w["staff_online"] for w in workers),
            "staff_failures": group_causes([c for w in workers
                                            for c, n in w["staff_failures"].items()
                                            for _ in range(n)]),
        },
        "join_ms": join,
        "signalling_rtt_ms": rtt.summary(1000, 2),
        "media": media,
        # Datagrams the kernel dropped because a receiving socket was full, machine-wide,
        # during the run: loss with drops here happened at a socket (a starved generator
        # or server), not on the way.
        "udp_receive_drops": udp_drops,
        "server_resources": {
            "cpu_source": cpu_source,
            "cpu_percent_of_one_core": {
                "idle": idle_cpu_percent, "steady": round(steady, 2) if steady else None,
                "steady_window_s": list(window) if window else None,
                "mean": round(sum(cpu_values) / len(cpu_values), 2) if cpu_values else None,
                "p95": percentile(cpu_values, 0.95), "max": max(cpu_values, default=None)},
            "cpu_percent_per_consultation": per_consultation,
            "rss_mb": {"start": rss[0] if rss else None, "max": max(rss, default=None),
                       "end": rss[-1] if rss else None},
            "forwarded_packets": forwarded_delta,
            "counted_vs_forwarded": round(media["packets_counted"] / forwarded_delta, 4)
            if forwarded_delta else None,
        },
        "generator": {
            # With the server the tool starts, the server's machine too.
            "machine": machine.describe(),
            "workers": len(workers), "cpus": generator_cores,
            "cpu_s": round(generator_cpu, 2),
            "cpu_percent_of_one_core": round(100 * generator_cpu / wall, 1),
            "cpu_percent_of_its_cpus": round(100 * generator_cpu / wall
                                             / max(1, len(generator_cores)), 1),
            # sampled from /proc while the most calls ran: the figure saturation is judged on
            "steady_cpu_percent_of_its_cpus": round(generator_steady
                                                    / max(1, len(generator_cores)), 1)
            if generator_steady is not None else None,
            # Which peers simulated the participants (raw_peer.py or aiortc), and what one
            # consultation cost the generator while the most calls ran: the figure that
            # says how many consultations one generator core can drive.
            "media_path": options.get("media_path"),
            "steady_cpu_percent_per_consultation": round(generator_steady / peak_calls, 2)
            if generator_steady is not None and peak_calls else None,
            "parent_cpu_s": round(parent_cpu_s, 2),
            "per_worker": [{"worker": w["worker"], "sessions": len(w["sessions"]),
                            "cpu_s": w["cpu_s"],
                            "cpu_percent": round(100 * w["cpu_s"] / max(w["wall_s"], 1e-9),
                                                 1),
                            # frames or RTCP the raw media clock failed to send (a bug)
                            "media_clock_errors": w.get("media_clock_errors", 0)}
                           for w in workers],
        },
        "timeline": line,
        "server_series": series,
        "session_results": sessions,
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value}{unit}"


def markdown(report: dict[str, Any], command: str) -> str:
    s = report["sessions"]
    res = report["server_resources"]
    gen = report["generator"]
    media = report["media"]
    cpu = res["cpu_percent_of_one_core"]
    lines = [
        "# shopcall bench",
        "",
        f"Command: `{command}`",
        "",
        f"Server: {report['server'].get('url')} ({report['server'].get('kind')}; CPUs "
        f"{report['server'].get('cpus') or 'unpinned'}); generator: {gen['workers']} "
        f"worker(s) on CPUs {gen['cpus']}. Duration {report['duration_s']} s.",
        "",
        "## Consultations",
        "",
        f"{s['ok']} of {s['planned']} completed, {s['failed']} failed; at most "
        f"{s['peak_in_call']} in call at once; {s['chat_messages_delivered']} chat messages "
        "delivered.",
        "",
    ]
    if s["failures_by_cause"]:
        lines += ["| failure cause | sessions |", "|---|---|"]
        lines += [f"| `{c}` | {n} |" for c, n in s["failures_by_cause"].items()]
        lines.append("")
    if s["feature_failures_by_cause"]:
        lines += ["Optional features refused (the consultation went on):", "",
                  "| feature failure | sessions |", "|---|---|"]
        lines += [f"| `{c}` | {n} |" for c, n in s["feature_failures_by_cause"].items()]
        lines.append("")
    lines += ["## Join times (ms)", "", "| step | n | p50 | p95 | p99 | max |",
              "|---|---|---|---|---|---|"]
    for key, v in report["join_ms"].items():
        if v["count"]:
            lines.append(f"| {key.replace('_', ' ')} | {v['count']} | {_fmt(v['p50'])} | "
                         f"{_fmt(v['p95'])} | {_fmt(v['p99'])} | {_fmt(v['max'])} |")
    r = report["signalling_rtt_ms"]
    lines += ["", f"Signalling round trip (every request): p50 {_fmt(r['p50'])} ms, p95 "
              f"{_fmt(r['p95'])} ms, p99 {_fmt(r['p99'])} ms over {r['count']} requests.",
              "", "## Media", "",
              "| | streams | packets | loss | jitter p95 | latency p50 / p95 / p99 |",
              "|---|---|---|---|---|---|"]
    for kind in ("audio", "video"):
        m = media[kind]
        loss = f"{100 * m['loss_ratio']:.3f}%" if m["loss_ratio"] is not None else "n/a"
        lat = m["latency_ms"]
        lines.append(f"| {kind} | {m['streams']} | {m['packets']:,} | {loss} | "
                     f"{_fmt(m['jitter_ms']['p95'], ' ms')} | {_fmt(lat['p50'])} / "
                     f"{_fmt(lat['p95'])} / {_fmt(lat['p99'])} ms |")
    v = media["video"]
    lines += ["", f"Video: {v.get('frames', 0):,} complete frames received, "
              f"{v.get('freezes', 0)} freezes ({_fmt(v.get('freeze_s'))} s); "
              f"{v.get('decoded_frames_sample', 0):,} frames decoded by "
              f"{v.get('decoding_receivers', 0)} sampled receiver(s). Generator lag behind "
              f"the media schedule at worst {_fmt(media['generator_lag_ms_max'])} ms; "
              f"UDP datagrams dropped by full receive buffers on this machine: "
              f"{_fmt((report.get('udp_receive_drops') or {}).get('RcvbufErrors'))}.",
              "", "## Server", "",
              f"CPU (from {res['cpu_source']}), % of one core: idle {_fmt(cpu['idle'])}, "
              f"steady {_fmt(cpu['steady'])} with {s['peak_in_call']} calls, max "
              f"{_fmt(cpu['max'])}; per consultation "
              f"**{_fmt(res['cpu_percent_per_consultation'])}%** of a core. RSS max "
              f"{_fmt(res['rss_mb']['max'])} MB.",
              "",
              f"Packets the server forwarded (its /metrics): {_fmt(res['forwarded_packets'])}; "
              f"counted by the receivers: {media['packets_counted']:,} "
              f"(ratio {_fmt(res['counted_vs_forwarded'])}).",
              "", "## Generator", "",
              f"{gen['cpu_s']} CPU seconds in {gen['workers']} worker(s): "
              f"{gen['cpu_percent_of_one_core']}% of one core, "
              f"{gen['cpu_percent_of_its_cpus']}% of its {len(gen['cpus']) or 'unpinned'} "
              f"CPU(s) on average, {_fmt(gen['steady_cpu_percent_of_its_cpus'])}% while the "
              "most calls ran, "
              f"{_fmt(gen.get('steady_cpu_percent_per_consultation'))}% of a core per "
              f"consultation (media path: {gen.get('media_path') or 'n/a'}). Near 100% means "
              "the generator, not the server, was the limit.",
              ""]
    if "capacity" in report:
        c = report["capacity"]
        lines += ["## Capacity", "",
                  f"Largest N that held: **{c['largest_ok']}** "
                  f"(server CPU per consultation {_fmt(c['cpu_percent_per_consultation'])}% "
                  f"of a core). Stopped because: {c['stopped_because']}.", "",
                  "| N | held | broken limits | loss | join p99 (ms) | server CPU steady |",
                  "|---|---|---|---|---|---|"]
        for step in c["steps"]:
            held = "yes" if step["held"] else "no"
            if step.get("suspect") and not step["held"]:
                held += f" (but {'; '.join(step['suspect'])})"
            if step.get("first_try_broken"):
                held += f" (second run; the first broke: {'; '.join(step['first_try_broken'])})"
            lines.append(f"| {step['sessions']} | {held} | "
                         f"{'; '.join(step['broken']) or '-'} | "
                         f"{_fmt(step['loss_ratio'])} | {_fmt(step['join_p99_ms'])} | "
                         f"{_fmt(step['server_cpu_steady'])}% |")
        lines.append("")
    lines += ["Plots: " + ", ".join(f"`{p}`" for p in report.get("plots", [])), ""]
    return "\n".join(lines)
