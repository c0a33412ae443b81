"""``--find-capacity``: which N to try next and whether a step held. Pure logic.

A step holds when loss stays at or under 1%, the p99 of escalation -> first frame stays
at or under 2 s, the server's CPU stays under saturation (90% of its core in the steady
window, or its peak at 98%), and no more than 1% of consultations fail. N doubles until a
step breaks, then the gap between the largest N that held and the smallest that broke is
bisected down to ``resolution``. A generator that saturates its own CPUs stops the search:
past that point the tool, not the server, is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_loss: float = 0.01
    max_join_p99_s: float = 2.0
    max_cpu_percent: float = 90.0
    max_failed_ratio: float = 0.01
    generator_saturation_percent: float = 90.0
    generator_lag_ms: float = 200.0  # beyond this the generator was starved of CPU


def judge(report: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """One step's verdict: which limits broke, and the figures they were judged on."""
    sessions = report["sessions"]
    loss = report["media"]["loss_ratio"]
    join = report["join_ms"]["escalate_to_first_frame"]["p99"]
    cpu = report["server_resources"]["cpu_percent_of_one_core"]
    steady, peak = cpu["steady"], cpu["max"]
    broken = []
    if loss is not None and loss > limits.max_loss:
        broken.append(f"loss {100 * loss:.2f}% > {100 * limits.max_loss:g}%")
    if join is not None and join > limits.max_join_p99_s * 1000:
        broken.append(f"join p99 {join / 1000:.2f} s > {limits.max_join_p99_s:g} s")
    if steady is not None and steady >= limits.max_cpu_percent:
        broken.append(f"server CPU {steady:.0f}% of a core")
    elif peak is not None and peak >= 98.0:
        broken.append(f"server CPU peaked at {peak:.0f}% of a core")
    planned = sessions["planned"]
    if planned and sessions["failed"] / planned > limits.max_failed_ratio:
        broken.append(f"{sessions['failed']}/{planned} consultations failed")
    generator = report["generator"]["steady_cpu_percent_of_its_cpus"]
    if generator is None:
        generator = report["generator"]["cpu_percent_of_its_cpus"]
    lag = report["media"].get("generator_lag_ms_max")
    drops = (report.get("udp_receive_drops") or {}).get("RcvbufErrors")
    suspect = []
    if lag is not None and lag > limits.generator_lag_ms:
        suspect.append(f"the generator fell {lag:.0f} ms behind its media schedule")
    if drops:
        suspect.append(f"{drops} datagrams dropped by full socket buffers")
    return {"sessions": planned, "held": not broken, "broken": broken,
            # Why a break may be the tool's or the machine's rather than the server's.
            "suspect": suspect,
            "loss_ratio": loss, "join_p99_ms": join, "server_cpu_steady": steady,
            "cpu_percent_per_consultation":
                report["server_resources"]["cpu_percent_per_consultation"],
            "generator_cpu_percent": generator,
            "generator_saturated": generator >= limits.generator_saturation_percent}


def next_sessions(steps: list[dict[str, Any]], *, start: int, maximum: int,
                  resolution: int = 1) -> int | None:
    """The next N to try after these verdicts, or None when the search is over."""
    if not steps:
        return max(1, min(start, maximum))
    last = steps[-1]
    if last["generator_saturated"] and last["held"]:
        return None
    held = [s["sessions"] for s in steps if s["held"]]
    broke = [s["sessions"] for s in steps if not s["held"]]
    low = max(held, default=0)
    if not broke:
        if low >= maximum:
            return None
        return min(maximum, max(low * 2, low + 1))
    high = min(b for b in broke if b > low) if any(b > low for b in broke) else None
    if high is None or high - low <= resolution:
        return None
    return (low + high) // 2


def conclusion(steps: list[dict[str, Any]], maximum: int) -> dict[str, Any]:
    held = [s for s in steps if s["held"]]
    best = max(held, key=lambda s: s["sessions"]) if held else None
    last = steps[-1] if steps else None
    if last is not None and last["generator_saturated"] and last["held"]:
        reason = (f"the generator saturated its CPUs at N={last['sessions']} "
                  f"({last['generator_cpu_percent']}%): the server held, capacity is at "
                  "least this")
    elif best is not None and best["sessions"] >= maximum and all(s["held"] for s in steps):
        reason = f"reached --max-sessions {maximum} without breaking a limit"
    else:
        first_broken = min((s for s in steps if not s["held"]), key=lambda s: s["sessions"],
                           default=None)
        reason = (f"N={first_broken['sessions']} broke: {'; '.join(first_broken['broken'])}"
                  if first_broken else "no step ran")
        if first_broken and first_broken.get("suspect"):
            reason += (f", but {'; '.join(first_broken['suspect'])}: the generator, not the "
                       "server, was likely the limit (give it more CPUs or run it elsewhere)")
    return {"largest_ok": best["sessions"] if best else 0,
            "cpu_percent_per_consultation": best["cpu_percent_per_consultation"]
            if best else None, "stopped_because": reason, "steps": steps}
